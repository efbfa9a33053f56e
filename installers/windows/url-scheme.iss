; Included by lightbox.iss: lightbox:// links open Lightbox for the user who installed it (HKCU).
; Removed on uninstall. Nothing else (no browser policy) is changed.
[Registry]
Root: HKCU; Subkey: "Software\Classes\lightbox"; ValueType: string; ValueName: ""; ValueData: "URL:Lightbox link"; Flags: uninsdeletekey
Root: HKCU; Subkey: "Software\Classes\lightbox"; ValueType: string; ValueName: "URL Protocol"; ValueData: ""
Root: HKCU; Subkey: "Software\Classes\lightbox\DefaultIcon"; ValueType: string; ValueName: ""; ValueData: """{app}\lightbox.exe"",0"
Root: HKCU; Subkey: "Software\Classes\lightbox\shell\open\command"; ValueType: string; ValueName: ""; ValueData: """{app}\lightbox.exe"" ""open"" ""%1"""
