; Inno Setup 6: a per-user Lightbox (no administrator rights) with the lightbox:// scheme and .dcm files.
; Build on Windows from the project root, after the PyInstaller bundle (dist\lightbox):
;   pyinstaller --noconfirm installers\pyinstaller\lightbox.spec
;   iscc installers\windows\lightbox.iss        -> dist\lightbox-<version>-setup.exe
#define AppName "Lightbox"
#ifndef AppVersion
  #define AppVersion "0.1.0"
#endif
#define AppExe "lightbox.exe"
#ifndef BundleDir
  #define BundleDir "..\..\dist\lightbox"
#endif

[Setup]
AppId={{6B1F3C52-8E0A-4D57-9C1E-2F4A7B9D0E31}
AppName={#AppName}
AppVersion={#AppVersion}
AppPublisher=Lightbox
DefaultDirName={autopf}\{#AppName}
DefaultGroupName={#AppName}
DisableProgramGroupPage=yes
PrivilegesRequired=lowest
ArchitecturesAllowed=x64compatible
ArchitecturesInstallIn64BitMode=x64compatible
ChangesAssociations=yes
CloseApplications=yes
UninstallDisplayIcon={app}\{#AppExe}
OutputDir=..\..\dist
OutputBaseFilename=lightbox-{#AppVersion}-setup
Compression=lzma2
SolidCompression=yes
WizardStyle=modern

[Tasks]
Name: "desktopicon"; Description: "{cm:CreateDesktopIcon}"; GroupDescription: "{cm:AdditionalIcons}"; Flags: unchecked

[InstallDelete]
; an update replaces the bundle's libraries instead of mixing two versions
Type: filesandordirs; Name: "{app}\_internal"

[Files]
Source: "{#BundleDir}\*"; DestDir: "{app}"; Flags: ignoreversion recursesubdirs createallsubdirs

[Icons]
Name: "{autoprograms}\{#AppName}"; Filename: "{app}\{#AppExe}"
Name: "{autodesktop}\{#AppName}"; Filename: "{app}\{#AppExe}"; Tasks: desktopicon

[Registry]
; .dcm files: the ProgID Lightbox.DICOM, offered in "Open with" and the default unless the user chose another
Root: HKCU; Subkey: "Software\Classes\.dcm"; ValueType: string; ValueName: ""; ValueData: "Lightbox.DICOM"; Flags: uninsdeletevalue
Root: HKCU; Subkey: "Software\Classes\.dcm"; ValueType: string; ValueName: "Content Type"; ValueData: "application/dicom"; Flags: uninsdeletevalue
Root: HKCU; Subkey: "Software\Classes\.dcm\OpenWithProgids"; ValueType: string; ValueName: "Lightbox.DICOM"; ValueData: ""; Flags: uninsdeletevalue
Root: HKCU; Subkey: "Software\Classes\Lightbox.DICOM"; ValueType: string; ValueName: ""; ValueData: "DICOM image"; Flags: uninsdeletekey
Root: HKCU; Subkey: "Software\Classes\Lightbox.DICOM\DefaultIcon"; ValueType: string; ValueName: ""; ValueData: """{app}\{#AppExe}"",0"
Root: HKCU; Subkey: "Software\Classes\Lightbox.DICOM\shell\open\command"; ValueType: string; ValueName: ""; ValueData: """{app}\{#AppExe}"" ""%1"""
Root: HKCU; Subkey: "Software\Classes\Applications\{#AppExe}"; ValueType: string; ValueName: "FriendlyAppName"; ValueData: "{#AppName}"; Flags: uninsdeletekey
Root: HKCU; Subkey: "Software\Classes\Applications\{#AppExe}\SupportedTypes"; ValueType: string; ValueName: ".dcm"; ValueData: ""

#include "url-scheme.iss"

[Run]
Filename: "{app}\{#AppExe}"; Description: "{cm:LaunchProgram,{#AppName}}"; Flags: nowait postinstall skipifsilent
