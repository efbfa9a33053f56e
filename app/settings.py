"""User settings: one JSON file in the config folder; unknown keys are kept, bad values fall back to defaults."""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from app import paths

log = logging.getLogger(__name__)


@dataclass
class Settings:
    # Issuers of Patient ID whose OtherPatientIDsSequence entry is the microchip number (besides type RFID).
    microchip_issuers: list[str] = field(default_factory=list)
    # Links: plain http is refused, except to this computer when this is on (for local test servers).
    allow_http_loopback: bool = False
    # A PEM file of extra certificate authorities trusted for downloads (besides requests' bundle).
    extra_ca_file: str = ""
    download_max_bytes: int = 2 * 1024**3
    download_parallel: int = 4
    connect_timeout_s: float = 10.0
    read_timeout_s: float = 30.0
    # "Receive studies": Lightbox's storage SCP runs whenever the window is open, importing what PACS and
    # modalities send to this AE title and port (C-MOVE retrieves use each configuration's own).
    receive_studies: bool = False
    receive_aet: str = "LIGHTBOX"
    receive_port: int = 11112
    extra: dict = field(default_factory=dict, repr=False)


def settings_file() -> Path:
    return paths.config_dir() / "settings.json"


def load() -> Settings:
    path = settings_file()
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return Settings()
    except (OSError, ValueError) as exc:
        log.warning("settings file %s unreadable (%s); using defaults", path, exc)
        return Settings()
    if not isinstance(data, dict):
        return Settings()
    settings = Settings()
    known = {f.name: f for f in fields(Settings) if f.name != "extra"}
    for key, value in data.items():
        if key in known:
            default = getattr(settings, key)
            if isinstance(value, type(default)) and not (isinstance(value, bool) and not isinstance(default, bool)) \
                    or isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool):
                setattr(settings, key, value)
            else:
                log.warning("setting %s has a value of the wrong type; using the default", key)
        else:
            settings.extra[key] = value
    return settings


def save(settings: Settings) -> None:
    data = dict(settings.extra)
    data.update({k: v for k, v in asdict(settings).items() if k != "extra"})
    paths.write_atomically(settings_file(), json.dumps(data, indent=2, ensure_ascii=False))
