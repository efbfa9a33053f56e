; Inno Setup include: lightbox:// links open Lightbox. HKA is the current user for a per-user install,
; the machine for an all-users one. Nothing else (no browser policy) is changed.
[Registry]
Root: HKA; Subkey: "Software\Classes\lightbox"; ValueType: string; ValueName: ""; ValueData: "URL:Lightbox link"; Flags: uninsdeletekey
Root: HKA; Subkey: "Software\Classes\lightbox"; ValueType: string; ValueName: "URL Protocol"; ValueData: ""
Root: HKA; Subkey: "Software\Classes\lightbox\DefaultIcon"; ValueType: string; ValueName: ""; ValueData: """{app}\Lightbox.exe"",0"
Root: HKA; Subkey: "Software\Classes\lightbox\shell\open\command"; ValueType: string; ValueName: ""; ValueData: """{app}\Lightbox.exe"" ""open"" ""%1"""
