"""PACS configurations: DICOMweb or classic DICOM (TCP), chosen once; strict AE titles; stored as JSON.

The file (`pacs.json` in the config folder) holds {"version", "allow_transfer", "configs": [...]}; it is
written atomically and never holds a password or token (see app.pacs.secrets). A configuration is named
by the PACS's AE title, unique across all of them (compared without surrounding spaces or case).
"""

from __future__ import annotations

import json
import logging
import uuid
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from urllib.parse import urlsplit

from app import paths
from app.errors import LightboxError, UsageError
from app.pacs import secrets

log = logging.getLogger(__name__)

VERSION = 1
DICOMWEB, DIMSE = "dicomweb", "dimse"
TYPES = (DICOMWEB, DIMSE)
BADGES = {DICOMWEB: "DW", DIMSE: "T"}
TYPE_NAMES = {DICOMWEB: "DICOMweb", DIMSE: "Classic DICOM (TCP)"}
AUTH = ("none", "basic", "bearer")
RETRIEVE_METHODS = ("auto", "get", "move")  # auto: C-GET, then C-MOVE if C-GET fails
CHARSETS = ("ISO_IR 6", "ISO_IR 100", "ISO_IR 101", "ISO_IR 109", "ISO_IR 110", "ISO_IR 144", "ISO_IR 127",
            "ISO_IR 126", "ISO_IR 138", "ISO_IR 148", "ISO_IR 13", "ISO_IR 166", "ISO_IR 192", "GB18030")


class ConfigError(UsageError):
    """A value that breaks a rule; `field` names the field, the message the rule."""

    def __init__(self, field_name: str, message: str):
        self.field = field_name
        super().__init__(message)


# -- validation -----------------------------------------------------------------------------------

def check_ae_title(text: str, what: str = "AE title", field_name: str = "aet") -> tuple[str, list[str]]:
    """The AE title as stored (surrounding spaces dropped) and warnings; ConfigError naming the rule broken
    (and, in `field`, the field it was read from)."""
    if text is None or text == "":
        raise ConfigError(field_name, f"The {what} is required.")
    if not text.strip():
        raise ConfigError(field_name, f"The {what} cannot be only spaces.")
    value = text.strip()
    if len(value) > 16:
        raise ConfigError(field_name, f"The {what} '{value}' is {len(value)} characters long; at most 16 are "
                          "allowed.")
    if "\\" in value:
        raise ConfigError(field_name, f"The {what} cannot contain a backslash (\\).")
    bad = [c for c in value if not (0x20 <= ord(c) <= 0x7E)]
    if bad:
        kind = "control characters" if any(ord(c) < 0x20 or ord(c) == 0x7F for c in bad) else \
            "characters other than printable ASCII"
        raise ConfigError(field_name, f"The {what} cannot contain {kind} ({', '.join(repr(c) for c in bad[:3])}).")
    warnings = []
    if value != value.upper():
        warnings.append(f"The {what} '{value}' has lowercase letters; AE titles are usually uppercase, "
                        "and some systems compare them exactly.")
    return value, warnings


def check_url(text: str) -> str:
    url = (text or "").strip()
    if not url:
        raise ConfigError("url", "The DICOMweb base URL is required.")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises on a malformed port
    except ValueError:
        raise ConfigError("url", f"'{url}' is not a valid URL (malformed port or address).") from None
    if parts.scheme not in ("http", "https"):
        raise ConfigError("url", f"The DICOMweb base URL must start with https:// or http:// (not '{url}').")
    if not parts.hostname:
        raise ConfigError("url", f"The DICOMweb base URL '{url}' has no server name.")
    if parts.query or parts.fragment:
        raise ConfigError("url", "The DICOMweb base URL cannot have a query (?...) or fragment (#...).")
    if parts.username or parts.password:
        raise ConfigError("url", "Put the user name and password in the authentication fields, not in the URL.")
    return url.rstrip("/")


def check_port(value, what: str = "port", field_name: str = "port") -> int:
    try:
        port = int(str(value).strip())
    except (TypeError, ValueError):
        raise ConfigError(field_name, f"The {what} must be a whole number from 1 to 65535 (not '{value}').") \
            from None
    if not 1 <= port <= 65535:
        raise ConfigError(field_name, f"The {what} must be from 1 to 65535 (not {port}).")
    return port


def check_host(text: str) -> str:
    host = (text or "").strip()
    if not host:
        raise ConfigError("host", "The PACS host name or address is required.")
    if _is_ipv6(host):
        return host.strip("[]")
    if any(c.isspace() for c in host) or any(c in host for c in "/:@?#\\"):
        raise ConfigError("host", f"'{host}' is not a host name or address (no spaces, slashes or ports).")
    return host


def _is_ipv6(text: str) -> bool:
    import ipaddress

    try:
        return ipaddress.ip_address(text.strip("[]")).version == 6
    except ValueError:
        return False


def check_header(text: str) -> tuple[str, str]:
    name, colon, value = (text or "").partition(":")
    name = name.strip()
    if not colon or not name or any(c in name for c in " \t\r\n()<>@,;:\\\"/[]?={}"):
        raise ConfigError("headers", f"A header is written 'Name: value' (not '{text.split(':')[0]}…').")
    if any(c in value for c in "\r\n\0"):
        raise ConfigError("headers", f"The value of header {name} cannot span lines.")
    return name, value.strip()


def _check_file(path: str, what: str, field_name: str) -> str:
    path = (path or "").strip()
    if path and not Path(path).is_file():
        raise ConfigError(field_name, f"The {what} {path} does not exist.")
    return path


# -- the model ------------------------------------------------------------------------------------

@dataclass
class DicomWebOptions:
    url: str
    qido: bool = True  # import: QIDO-RS search, WADO-RS retrieve
    stow: bool = True  # export
    auth: str = "none"
    user: str = ""
    headers: list[tuple[str, str]] = field(default_factory=list)
    send_aet_headers: bool = True
    source_aet: str = "LIGHTBOX"
    source_aet_header: str = "X-Source-AET"
    pacs_aet_header: str = "X-Destination-AET"
    multipart_stow: bool = True
    ca_file: str = ""
    timeout_s: float = 30.0


@dataclass
class DimseOptions:
    host: str
    port: int = 104
    local_aets: list[str] = field(default_factory=lambda: ["LIGHTBOX"])
    test_aet: str = "LIGHTBOX"  # calling AE title for the connection test
    query_aet: str = "LIGHTBOX"  # calling AE title for queries and retrieves
    store: bool = True  # export: C-STORE
    query_retrieve: bool = True  # import: C-FIND, C-GET/C-MOVE
    retrieve_method: str = "auto"
    move_aet: str = "LIGHTBOX"  # where C-MOVE sends: this computer's storage AE title and port
    move_port: int = 11112
    mwl: bool = False
    mwl_charset: str = "ISO_IR 192"
    mpps: bool = False
    tls: bool = False
    ca_file: str = ""
    client_cert: str = ""
    client_key: str = ""
    timeout_s: float = 30.0


@dataclass
class PacsConfig:
    type: str
    name: str
    aet: str
    dicomweb: DicomWebOptions | None = None
    dimse: DimseOptions | None = None
    id: str = field(default_factory=lambda: uuid.uuid4().hex)  # names the secret; survives AE title edits

    @property
    def badge(self) -> str:
        return BADGES[self.type]

    @property
    def secret_key(self) -> str:
        return f"pacs:{self.id}"

    @property
    def functions(self) -> list[str]:
        if self.type == DICOMWEB:
            o = self.dicomweb
            return [f for f, on in (("QIDO-RS", o.qido), ("WADO-RS", o.qido), ("STOW-RS", o.stow)) if on]
        o = self.dimse
        found = ["C-ECHO"]
        if o.store:
            found.append("C-STORE")
        if o.query_retrieve:
            found += ["C-FIND", {"auto": "C-GET/C-MOVE", "get": "C-GET", "move": "C-MOVE"}[o.retrieve_method]]
        if o.mwl:
            found.append("Worklist")
        if o.mpps:
            found.append("MPPS")
        return found

    @property
    def exports(self) -> bool:
        return self.dicomweb.stow if self.type == DICOMWEB else self.dimse.store

    @property
    def imports(self) -> bool:
        return self.dicomweb.qido if self.type == DICOMWEB else self.dimse.query_retrieve

    @property
    def address(self) -> str:
        return self.dicomweb.url if self.type == DICOMWEB else f"{self.dimse.host}:{self.dimse.port}"

    def validate(self) -> list[str]:
        """Normalise in place; raise ConfigError for the first rule broken; return warnings."""
        if self.type not in TYPES:
            raise ConfigError("type", f"The type must be dicomweb or dimse (not '{self.type}').")
        if (self.type == DICOMWEB) != (self.dicomweb is not None) or (self.type == DIMSE) != (self.dimse is not None):
            raise ConfigError("type", "The settings do not match the configuration's type.")
        self.name = (self.name or "").strip()
        if not self.name:
            raise ConfigError("name", "The display name is required.")
        self.aet, warnings = check_ae_title(self.aet, "PACS AE title")
        if self.type == DICOMWEB:
            o = self.dicomweb
            o.url = check_url(o.url)
            if o.auth not in AUTH:
                raise ConfigError("auth", f"Authentication is one of none, basic, bearer (not '{o.auth}').")
            if o.auth == "basic" and not o.user.strip():
                raise ConfigError("user", "HTTP basic authentication needs a user name.")
            o.headers = [check_header(f"{n}: {v}") for n, v in o.headers]
            o.source_aet, more = check_ae_title(o.source_aet, "source AE title", "source_aet")
            warnings += more
            for name in (o.source_aet_header, o.pacs_aet_header):
                check_header(f"{name}: x")
            o.ca_file = _check_file(o.ca_file, "CA file", "ca_file")
            if o.url.startswith("http://"):
                warnings.append("The URL uses plain http: passwords and images cross the network unencrypted.")
        else:
            o = self.dimse
            o.host = check_host(o.host)
            o.port = check_port(o.port)
            local = []
            for aet in o.local_aets or []:
                value, more = check_ae_title(aet, "own AE title", "local_aets")
                warnings += more
                if value not in local:
                    local.append(value)
            if not local:
                raise ConfigError("local_aets", "At least one AE title of this computer is required.")
            o.local_aets = local
            for attr, what in (("test_aet", "AE title for the test"), ("query_aet", "AE title for queries")):
                value, _ = check_ae_title(getattr(o, attr), what, attr)
                if value not in local:
                    raise ConfigError(attr, f"The {what} '{value}' is not one of this computer's AE titles "
                                      f"({', '.join(local)}).")
                setattr(o, attr, value)
            if o.retrieve_method not in RETRIEVE_METHODS:
                raise ConfigError("retrieve_method", f"The retrieve method is auto, get or move (not "
                                  f"'{o.retrieve_method}').")
            o.move_aet, more = check_ae_title(o.move_aet, "C-MOVE destination AE title", "move_aet")
            warnings += [w for w in more if w not in warnings]
            o.move_port = check_port(o.move_port, "local storage port", "move_port")
            if o.mwl_charset not in CHARSETS:
                raise ConfigError("mwl_charset", f"Unknown character set '{o.mwl_charset}' (one of "
                                  f"{', '.join(CHARSETS)}).")
            if o.tls:
                o.ca_file = _check_file(o.ca_file, "CA file", "ca_file")
                o.client_cert = _check_file(o.client_cert, "client certificate", "client_cert")
                o.client_key = _check_file(o.client_key, "client key", "client_key")
        return warnings

    def as_dict(self) -> dict:
        data = asdict(self)
        if self.dicomweb is not None:
            data["dicomweb"]["headers"] = [list(h) for h in self.dicomweb.headers]
        return data

    @classmethod
    def from_dict(cls, data: dict) -> PacsConfig:
        kind = data.get("type")
        web = data.get("dicomweb")
        dimse = data.get("dimse")
        config = cls(type=kind, name=data.get("name", ""), aet=data.get("aet", ""),
                     dicomweb=_options(DicomWebOptions, web) if web else None,
                     dimse=_options(DimseOptions, dimse) if dimse else None, id=data.get("id") or uuid.uuid4().hex)
        if config.dicomweb is not None:
            config.dicomweb.headers = [tuple(h) for h in config.dicomweb.headers]
        return config


def _options(kind, data: dict):
    known = {f.name for f in fields(kind)}
    return kind(**{k: v for k, v in data.items() if k in known})


def _same_aet(a: str, b: str) -> bool:
    return a.strip().upper() == b.strip().upper()


# -- the store ------------------------------------------------------------------------------------

def config_file() -> Path:
    return paths.config_dir() / "pacs.json"


@dataclass
class PacsConfigs:
    configs: list[PacsConfig] = field(default_factory=list)
    allow_transfer: bool = True  # off: no configuration is offered for export

    @classmethod
    def load(cls) -> PacsConfigs:
        path = config_file()
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return cls()
        except (OSError, ValueError) as exc:
            raise LightboxError(f"The PACS configurations in {path} cannot be read ({exc}).") from None
        if not isinstance(data, dict) or data.get("version", 0) > VERSION:
            raise LightboxError(f"{path} was written by a newer Lightbox; update Lightbox to use it.")
        return cls([PacsConfig.from_dict(c) for c in data.get("configs", [])], bool(data.get("allow_transfer", True)))

    def save(self) -> None:
        data = {"version": VERSION, "allow_transfer": self.allow_transfer,
                "configs": [c.as_dict() for c in self.configs]}
        paths.write_atomically(config_file(), json.dumps(data, indent=2, ensure_ascii=False))

    def find(self, key: str) -> PacsConfig:
        """By AE title, or by display name where that is unique."""
        key = (key or "").strip()
        for config in self.configs:
            if _same_aet(config.aet, key):
                return config
        named = [c for c in self.configs if c.name.strip().casefold() == key.casefold()]
        if len(named) == 1:
            return named[0]
        if named:
            raise UsageError(f"Several PACS configurations are named '{key}'; use the AE title "
                             f"({', '.join(c.aet for c in named)}).")
        raise UsageError(f"There is no PACS configuration with AE title or name '{key}'.")

    def exporting(self) -> list[PacsConfig]:
        """What may be offered for sending: nothing while transfer to PACS is switched off."""
        return [c for c in self.configs if c.exports] if self.allow_transfer else []

    def add(self, config: PacsConfig, secret: str | None = None) -> list[str]:
        warnings = config.validate()
        self._check_unique(config)
        if secret:
            secrets.set_secret(config.secret_key, secret)
        self.configs.append(config)
        self.save()
        return warnings

    def update(self, key: str, changed: PacsConfig, secret: str | None = None) -> list[str]:
        """Replace a configuration by an edited copy; its type cannot change."""
        old = self.find(key)
        if changed.type != old.type:
            raise ConfigError("type", f"The type of a configuration cannot change ({TYPE_NAMES[old.type]}); "
                              "create a new configuration instead.")
        changed.id = old.id
        warnings = changed.validate()
        self._check_unique(changed, ignore=old)
        if secret:
            secrets.set_secret(changed.secret_key, secret)
        self.configs[self.configs.index(old)] = changed
        self.save()
        return warnings

    def duplicate(self, key: str, aet: str, name: str | None = None) -> PacsConfig:
        old = self.find(key)
        copy = PacsConfig.from_dict({**old.as_dict(), "id": uuid.uuid4().hex, "aet": aet,
                                     "name": name or f"{old.name} (copy)"})
        secret = secrets.get_secret(old.secret_key)
        self.add(copy, secret)
        return copy

    def remove(self, key: str) -> PacsConfig:
        config = self.find(key)
        self.configs.remove(config)
        self.save()
        secrets.delete_secret(config.secret_key)
        return config

    def _check_unique(self, config: PacsConfig, ignore: PacsConfig | None = None) -> None:
        for other in self.configs:
            if other is not ignore and _same_aet(other.aet, config.aet):
                raise ConfigError("aet", f"The AE title {config.aet} is already used by the configuration "
                                  f"'{other.name}'; each PACS configuration needs its own.")

    def export_file(self, path: Path) -> int:
        """The configurations, without secrets, to a file another Lightbox can import."""
        data = {"version": VERSION, "configs": [c.as_dict() for c in self.configs]}
        paths.write_atomically(Path(path), json.dumps(data, indent=2, ensure_ascii=False))
        return len(self.configs)

    def import_file(self, path: Path) -> tuple[list[PacsConfig], list[str]]:
        """Configurations from an exported file; those whose AE title exists already are skipped (listed)."""
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
            incoming = [PacsConfig.from_dict(c) for c in data["configs"]]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise LightboxError(f"{path} is not a Lightbox PACS configuration file ({exc}).") from None
        added, skipped = [], []
        for config in incoming:
            config = replace(config, id=uuid.uuid4().hex)
            try:
                config.validate()
                self._check_unique(config)
            except ConfigError as exc:
                skipped.append(f"{config.aet or config.name}: {exc}")
                continue
            self.configs.append(config)
            added.append(config)
        self.save()
        return added, skipped

    def secret(self, config: PacsConfig) -> str | None:
        return secrets.get_secret(config.secret_key)
