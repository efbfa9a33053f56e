"""Passwords and tokens of PACS configurations: in the OS keyring, never in the configuration file.

Where no keyring backend exists (a headless Linux without a secret service) the user may opt in, with
LIGHTBOX_SECRETS=file, to a file in the config folder that only they can read.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from app import paths
from app.errors import LightboxError

log = logging.getLogger(__name__)

SERVICE = "Lightbox PACS"


class SecretsUnavailable(LightboxError):
    pass


def _file() -> Path:
    return paths.config_dir() / "secrets.json"


def _use_file() -> bool:
    return os.environ.get("LIGHTBOX_SECRETS", "").strip().lower() == "file"


def _keyring():
    """The keyring module when a real backend is there, else None."""
    try:
        import keyring
        from keyring.backends import chainer, fail
    except ImportError:
        return None
    backend = keyring.get_keyring()
    if isinstance(backend, fail.Keyring):
        return None
    if isinstance(backend, chainer.ChainerBackend) and not backend.backends:
        return None
    return keyring


def where() -> str:
    if _use_file():
        return f"the file {_file()} (LIGHTBOX_SECRETS=file)"
    ring = _keyring()
    return f"the system keyring ({type(ring.get_keyring()).__name__})" if ring else "nowhere (no keyring)"


def _unavailable() -> SecretsUnavailable:
    return SecretsUnavailable(
        "No system keyring is available to keep the password safe (on Linux: a secret service such as "
        "GNOME Keyring or KWallet). Start one, or set LIGHTBOX_SECRETS=file to keep secrets in "
        f"{_file()}, readable only by you.")


def _read_file() -> dict:
    try:
        return json.loads(_file().read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise LightboxError(f"The secrets file {_file()} cannot be read ({exc}).") from None


def _write_file(data: dict) -> None:
    paths.write_atomically(_file(), json.dumps(data), private=True)


def set_secret(key: str, value: str) -> None:
    if _use_file():
        data = _read_file()
        data[key] = value
        _write_file(data)
        return
    ring = _keyring()
    if ring is None:
        raise _unavailable()
    try:
        ring.set_password(SERVICE, key, value)
    except Exception as exc:  # noqa: BLE001 - keyring backends raise their own kinds
        log.info("keyring refused a secret: %s", type(exc).__name__)
        raise SecretsUnavailable(f"The system keyring refused to store the password ({type(exc).__name__}).") \
            from None


def get_secret(key: str) -> str | None:
    if _use_file():
        return _read_file().get(key)
    ring = _keyring()
    if ring is None:
        return None
    try:
        return ring.get_password(SERVICE, key)
    except Exception as exc:  # noqa: BLE001
        log.info("keyring could not be read: %s", type(exc).__name__)
        return None


def delete_secret(key: str) -> None:
    if _use_file():
        data = _read_file()
        if data.pop(key, None) is not None:
            _write_file(data)
        return
    ring = _keyring()
    if ring is None:
        return
    try:
        ring.delete_password(SERVICE, key)
    except Exception:  # noqa: BLE001 - absent already
        pass
