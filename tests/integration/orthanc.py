"""A real Orthanc (Debian's orthanc + orthanc-dicomweb) on loopback, for integration tests.

Started from a config in a temporary folder with free ports, HTTP authentication, DICOMweb and worklists;
ready once GET /system answers 200; stopped with SIGTERM. See /work/shared/peers.md for the traps.
Variants (a strict DICOM side, no HTTP authentication ...) pass `overrides`, top-level config keys.
"""

from __future__ import annotations

import base64
import glob
import json
import os
import secrets
import signal
import socket
import subprocess
import time
from pathlib import Path

import requests

BINARY = "/usr/sbin/Orthanc"
PLUGIN_DIRS = ("/usr/lib/orthanc", "/usr/share/orthanc/plugins")
PLUGINS = {"DICOMweb": ("libOrthancDicomWeb.so*", "orthanc-dicomweb"),
           "worklists": ("libModalityWorklists.so*", "orthanc")}
# Overrides for common variants.
NO_AUTH = {"AuthenticationEnabled": False, "RegisteredUsers": {}}
STRICT_DICOM = {"DicomCheckCalledAet": True, "DicomAlwaysAllowEcho": False}  # only DicomModalities may echo
START_TIMEOUT_S = 20.0
STOP_TIMEOUT_S = 15.0
RESTART_TIMEOUT_S = 10.0


class OrthancMissing(RuntimeError):
    """Orthanc or one of its plugins is not installed; the message names the Debian package."""


def find_plugins() -> list[str]:
    """The plugin files, whatever their versions; OrthancMissing names the package to install."""
    if not os.access(BINARY, os.X_OK):
        raise OrthancMissing(f"Orthanc is not installed ({BINARY} is missing): apt-get install orthanc orthanc-dicomweb")
    found = []
    for what, (pattern, package) in PLUGINS.items():
        matches = sorted(p for d in PLUGIN_DIRS for p in glob.glob(os.path.join(d, pattern)) if os.path.isfile(p))
        if not matches:
            raise OrthancMissing(f"Orthanc's {what} plugin ({pattern}) is not in {' or '.join(PLUGIN_DIRS)}: "
                                 f"apt-get install {package}")
        found.append(os.path.realpath(matches[0]))
    return found


def free_ports(count: int) -> list[int]:
    """Ports free on 127.0.0.1 now (all held open together, so they differ)."""
    socks = []
    try:
        for _ in range(count):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


class Orthanc:
    """One Orthanc process. `folder` holds its config, storage, worklists and log."""

    def __init__(self, folder: Path, *, aet: str = "ORTHANC", user: str = "lightbox", overrides: dict | None = None):
        self.folder = Path(folder)
        self.overrides = dict(overrides or {})
        self.aet = aet
        self.user = user
        self.password = secrets.token_urlsafe(16)
        self.http_port, self.dicom_port, self.lightbox_port = free_ports(3)
        self.lightbox_aet = "LIGHTBOX"
        self.worklists = self.folder / "worklists"
        self.log_path = self.folder / "orthanc.log"
        self.process: subprocess.Popen | None = None
        self.session = requests.Session()
        self.session.trust_env = False  # no proxy between us and loopback
        self.session.auth = (self.user, self.password)

    # -- addresses and credentials --

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def dicomweb_url(self) -> str:
        return f"{self.http_url}/dicom-web"

    @property
    def auth_header(self) -> str:
        return "Basic " + base64.b64encode(f"{self.user}:{self.password}".encode()).decode("ascii")

    @property
    def authenticated(self) -> bool:
        """Whether its HTTP side asks for the password."""
        return self.overrides.get("AuthenticationEnabled", True)

    # -- life --

    def config(self, plugins: list[str]) -> dict:
        storage = str(self.folder / "storage")
        return {
            "Name": "LIGHTBOX-TEST", "StorageDirectory": storage, "IndexDirectory": storage,
            "StorageCompression": False, "Plugins": plugins,
            "HttpServerEnabled": True, "HttpPort": self.http_port, "RemoteAccessAllowed": False,
            "AuthenticationEnabled": True, "RegisteredUsers": {self.user: self.password},
            "DicomServerEnabled": True, "DicomAet": self.aet, "DicomPort": self.dicom_port,
            "DicomCheckCalledAet": False, "DicomCheckModalityHost": False,
            "DicomAlwaysAllowEcho": True, "DicomAlwaysAllowStore": True,
            "DicomAlwaysAllowFind": False, "DicomAlwaysAllowGet": False, "DicomAlwaysAllowMove": False,
            "DicomModalities": {"lightbox": {"AET": self.lightbox_aet, "Host": "127.0.0.1",
                                             "Port": self.lightbox_port}},
            "DicomWeb": {"Enable": True, "Root": "/dicom-web/", "EnableWado": True, "WadoRoot": "/wado"},
            "Worklists": {"Enable": True, "Database": str(self.worklists)},
        } | self.overrides

    def start(self) -> Orthanc:
        plugins = find_plugins()
        self.folder.mkdir(parents=True, exist_ok=True)
        self.worklists.mkdir(exist_ok=True)
        for attempt in range(3):  # a port taken between picking and binding: pick again
            if self._launch(plugins):
                return self
            if attempt < 2:
                self.http_port, self.dicom_port, self.lightbox_port = free_ports(3)
        raise RuntimeError(f"Orthanc exited at start (code {self.process.returncode}):\n{self.log_tail()}")

    def _launch(self, plugins: list[str], *, log_mode: str = "wb") -> bool:
        """Start the process and wait until it answers (True), or until it exits (False)."""
        config = self.folder / "orthanc.json"
        config.write_text(json.dumps(self.config(plugins), indent=2))
        env = dict(os.environ, TCP_NODELAY="1")
        with open(self.log_path, log_mode) as log:
            self.process = subprocess.Popen([BINARY, str(config)], stdin=subprocess.DEVNULL, stdout=log,
                                            stderr=subprocess.STDOUT, env=env, cwd=self.folder)
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if self.process.poll() is not None:
                return False
            try:
                if self.session.get(f"{self.http_url}/system", timeout=1).status_code == 200:
                    return True
            except requests.RequestException:  # not listening yet (or someone else's server on the port)
                pass
            if time.monotonic() > deadline:
                tail = self.log_tail()
                self.stop()
                raise RuntimeError(f"Orthanc did not answer within {START_TIMEOUT_S:g} s:\n{tail}")
            time.sleep(0.02)

    def stop(self) -> None:
        self.session.close()
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def kill(self) -> None:
        """End the process at once (SIGKILL), as a crash or a power cut would, and reap it. Ports, storage and
        password stay this server's: restart() brings it back."""
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            process.kill()
            process.wait()

    def restart(self) -> Orthanc:
        """Stop it (SIGTERM, waiting for the exit) if it runs, then start it again on the same ports and storage;
        the log goes on in the same file. Retries for a few seconds while a port is not free yet."""
        self.stop()
        plugins = find_plugins()
        deadline = time.monotonic() + RESTART_TIMEOUT_S
        while not self._launch(plugins, log_mode="ab"):
            if time.monotonic() > deadline:
                raise RuntimeError(f"Orthanc did not start again (code {self.process.returncode}):\n"
                                   f"{self.log_tail()}")
            time.sleep(0.2)
        return self

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def __enter__(self) -> Orthanc:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- REST --

    def request(self, method: str, path: str, **kwargs) -> requests.Response:
        resp = self.session.request(method, f"{self.http_url}{path}", timeout=30, **kwargs)
        resp.raise_for_status()
        return resp

    def get(self, path: str):
        """GET a REST path (e.g. "/studies"); its JSON."""
        return self.request("GET", path).json()

    def upload(self, item: str | os.PathLike | bytes) -> dict:
        """Store one DICOM file (a path or its bytes) through POST /instances; Orthanc's answer."""
        data = bytes(item) if isinstance(item, (bytes, bytearray, memoryview)) else Path(item).read_bytes()
        return self.request("POST", "/instances", data=data,
                            headers={"Content-Type": "application/dicom"}).json()

    def instances(self) -> list[str]:
        """SOP Instance UIDs of everything stored, sorted."""
        return sorted(i["MainDicomTags"]["SOPInstanceUID"] for i in self.get("/instances?expand"))

    def clear(self) -> None:
        """Delete every patient (and so every study, series and instance)."""
        for patient in self.get("/patients"):
            self.request("DELETE", f"/patients/{patient}")
