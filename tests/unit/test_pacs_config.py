"""PACS configurations: the rules, the store, the secrets, the command line."""

import json
import os
import stat

import keyring
import pytest
from keyring.backend import KeyringBackend

from app.pacs import config as pc
from app.pacs import secrets
from app.pacs.config import ConfigError, DicomWebOptions, DimseOptions, PacsConfig, PacsConfigs


class MemoryKeyring(KeyringBackend):
    priority = 1

    def __init__(self):
        super().__init__()
        self.store = {}

    def set_password(self, service, username, password):
        self.store[(service, username)] = password

    def get_password(self, service, username):
        return self.store.get((service, username))

    def delete_password(self, service, username):
        self.store.pop((service, username), None)


@pytest.fixture
def ring(monkeypatch):
    monkeypatch.delenv("LIGHTBOX_SECRETS", raising=False)
    backend = MemoryKeyring()
    previous = keyring.get_keyring()
    keyring.set_keyring(backend)
    yield backend
    keyring.set_keyring(previous)


@pytest.fixture
def no_ring(monkeypatch):
    from keyring.backends import fail

    monkeypatch.delenv("LIGHTBOX_SECRETS", raising=False)
    previous = keyring.get_keyring()
    keyring.set_keyring(fail.Keyring())
    yield
    keyring.set_keyring(previous)


def dimse(aet="ORTHANC", **options) -> PacsConfig:
    return PacsConfig(pc.DIMSE, "Practice PACS", aet, dimse=DimseOptions(**{"host": "pacs.local", "port": 104,
                                                                           **options}))


def web(aet="CLOUD", **options) -> PacsConfig:
    return PacsConfig(pc.DICOMWEB, "Cloud PACS", aet,
                      dicomweb=DicomWebOptions(**{"url": "https://pacs.example/dicom-web", **options}))


# -- the rules ------------------------------------------------------------------------------------

@pytest.mark.parametrize("text, stored, message", [
    ("ORTHANC", "ORTHANC", None),
    ("  PACS1  ", "PACS1", None),
    ("A" * 16, "A" * 16, None),
    ("MY PACS", "MY PACS", None),
    ("X-RAY_1!", "X-RAY_1!", None),
    ("", None, "is required"),
    ("    ", None, "cannot be only spaces"),
    ("A" * 17, None, "17 characters long; at most 16"),
    ("PACS\\1", None, "cannot contain a backslash"),
    ("PACS\t1", None, "control characters"),
    ("PACS\x7f", None, "control characters"),
    ("PÄCS", None, "other than printable ASCII"),
])
def test_ae_title_rules(text, stored, message):
    if message is None:
        assert pc.check_ae_title(text)[0] == stored
    else:
        with pytest.raises(ConfigError, match=message) as error:
            pc.check_ae_title(text)
        assert error.value.field == "aet"


def test_lowercase_is_accepted_with_a_warning():
    value, warnings = pc.check_ae_title("orthanc")
    assert value == "orthanc" and "lowercase" in warnings[0]


@pytest.mark.parametrize("url, message", [
    ("https://pacs.example/dicom-web/", None),
    ("http://127.0.0.1:8042/dicom-web", None),
    ("https://[::1]:8443/rs", None),
    ("", "is required"),
    ("pacs.example/dicom-web", "must start with https:// or http://"),
    ("ftp://pacs.example/rs", "must start with https:// or http://"),
    ("https:///rs", "has no server name"),
    ("https://pacs.example:99999/rs", "malformed port"),
    ("https://pacs.example/rs?x=1", "cannot have a query"),
    ("https://vet:secret@pacs.example/rs", "not in the URL"),
])
def test_url_rules(url, message):
    if message is None:
        assert pc.check_url(url) == url.rstrip("/")
    else:
        with pytest.raises(ConfigError, match=message):
            pc.check_url(url)


@pytest.mark.parametrize("port, message", [
    ("104", None), (1, None), (65535, None), (" 4242 ", None),
    (0, "from 1 to 65535 \\(not 0\\)"), (65536, "not 65536"), ("http", "whole number"), ("", "whole number"),
    (-1, "not -1"),
])
def test_port_rules(port, message):
    if message is None:
        assert 1 <= pc.check_port(port) <= 65535
    else:
        with pytest.raises(ConfigError, match=message):
            pc.check_port(port)


@pytest.mark.parametrize("host, ok", [("pacs.local", True), ("10.0.0.5", True), ("::1", True), ("[fe80::1]", True),
                                      ("", False), ("pacs local", False), ("pacs:104", False), ("http://pacs", False)])
def test_host_rules(host, ok):
    if ok:
        assert pc.check_host(host)
    else:
        with pytest.raises(ConfigError):
            pc.check_host(host)


def test_a_configuration_validates_every_field_and_names_it():
    for config, field_name, message in [
        (dimse(local_aets=[]), "local_aets", "At least one AE title"),
        (dimse(test_aet="OTHER"), "test_aet", "not one of this computer's AE titles"),
        (dimse(retrieve_method="fax"), "retrieve_method", "auto, get or move"),
        (dimse(mwl_charset="KLINGON"), "mwl_charset", "Unknown character set"),
        (dimse(move_port=0), "move_port", "local storage port"),
        (dimse(test_aet="A" * 17), "test_aet", "at most 16"),
        (web(source_aet=""), "source_aet", "source AE title is required"),
        (web(auth="basic"), "user", "needs a user name"),
        (web(auth="digest"), "auth", "none, basic, bearer"),
        (web(headers=[("Bad Name", "x")]), "headers", "Name: value"),
        (PacsConfig(pc.DIMSE, " ", "X", dimse=DimseOptions(host="h")), "name", "display name is required"),
        (PacsConfig(pc.DIMSE, "x", "X", dicomweb=DicomWebOptions(url="https://a")), "type", "do not match"),
    ]:
        with pytest.raises(ConfigError, match=message) as error:
            config.validate()
        assert error.value.field == field_name, message


def test_plain_http_is_allowed_with_a_warning():
    assert any("plain http" in w for w in web(url="http://pacs.local/rs").validate())


# -- the store ------------------------------------------------------------------------------------

def test_configurations_are_saved_as_versioned_json_and_found_by_aet_or_name(lightbox_home):
    configs = PacsConfigs()
    configs.add(dimse())
    configs.add(web())
    data = json.loads(pc.config_file().read_text())
    assert data["version"] == pc.VERSION and [c["type"] for c in data["configs"]] == ["dimse", "dicomweb"]
    loaded = PacsConfigs.load()
    assert loaded.find("orthanc").name == "Practice PACS" and loaded.find("Cloud PACS").aet == "CLOUD"
    assert [c.badge for c in loaded.configs] == ["T", "DW"]
    with pytest.raises(pc.UsageError, match="no PACS configuration"):
        loaded.find("NOPE")


def test_ae_titles_are_unique_but_names_may_repeat(lightbox_home):
    configs = PacsConfigs()
    configs.add(dimse("ORTHANC"))
    configs.add(dimse("ORTHANC2"))  # same display name
    with pytest.raises(ConfigError, match="already used by the configuration 'Practice PACS'"):
        configs.add(web(" orthanc "))
    with pytest.raises(pc.UsageError, match="Several PACS configurations are named"):
        configs.find("Practice PACS")


def test_the_type_cannot_change(lightbox_home):
    configs = PacsConfigs()
    configs.add(dimse())
    with pytest.raises(ConfigError, match="type of a configuration cannot change"):
        configs.update("ORTHANC", web("ORTHANC"))


def test_transfer_switched_off_offers_nothing_for_export(lightbox_home):
    configs = PacsConfigs()
    configs.add(dimse())
    configs.add(web(stow=False))
    assert [c.aet for c in configs.exporting()] == ["ORTHANC"]
    configs.allow_transfer = False
    configs.save()
    assert PacsConfigs.load().exporting() == []


# -- secrets --------------------------------------------------------------------------------------

def test_secrets_live_in_the_keyring_never_in_the_json(lightbox_home, ring):
    configs = PacsConfigs()
    config = web(auth="basic", user="vet")
    configs.add(config, secret="s3cret-pw")
    assert "s3cret-pw" not in pc.config_file().read_text()
    assert list(ring.store.values()) == ["s3cret-pw"]
    assert PacsConfigs.load().secret(PacsConfigs.load().find("CLOUD")) == "s3cret-pw"
    copy = configs.duplicate("CLOUD", "CLOUD2")
    assert configs.secret(copy) == "s3cret-pw"
    configs.remove("CLOUD")
    assert list(ring.store.values()) == ["s3cret-pw"]  # the copy's, under its own key


def test_without_a_keyring_a_secret_needs_the_file_opt_in(lightbox_home, no_ring, monkeypatch):
    with pytest.raises(secrets.SecretsUnavailable, match="LIGHTBOX_SECRETS=file"):
        PacsConfigs().add(web(auth="bearer"), secret="tok")
    assert not pc.config_file().exists() or PacsConfigs.load().configs == []
    monkeypatch.setenv("LIGHTBOX_SECRETS", "file")
    configs = PacsConfigs()
    configs.add(web(auth="bearer"), secret="tok")
    path = lightbox_home / "config" / "secrets.json"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert configs.secret(configs.find("CLOUD")) == "tok" and "tok" not in pc.config_file().read_text()


def test_export_and_import_carry_no_secrets(lightbox_home, tmp_path, ring):
    configs = PacsConfigs()
    configs.add(web(auth="basic", user="vet"), secret="pw")
    configs.add(dimse())
    out = tmp_path / "practice.json"
    assert configs.export_file(out) == 2 and "pw" not in out.read_text()
    fresh = PacsConfigs()
    fresh.add(dimse())  # already there: skipped with a reason
    added, skipped = fresh.import_file(out)
    assert [c.aet for c in added] == ["CLOUD"] and "already used" in skipped[0]
    assert fresh.secret(fresh.find("CLOUD")) is None


# -- command line ---------------------------------------------------------------------------------

def test_cli_add_list_show_edit_remove(run_cli, lightbox_home, monkeypatch):
    monkeypatch.setenv("LIGHTBOX_SECRETS", "file")
    code, out, err = run_cli("pacs", "add", "--type", "dimse", "--aet", "ORTHANC", "--name", "Practice PACS",
                             "--host", "127.0.0.1", "--port", "4242", "--calling-aet", "VETWS1", "--mwl",
                             "--mwl-charset", "ISO_IR_100")
    assert code == 0, err
    assert out.strip() == ("Added: [T] ORTHANC          Practice PACS · 127.0.0.1:4242 · "
                           "C-ECHO, C-STORE, C-FIND, C-GET/C-MOVE, Worklist")
    code, out, err = run_cli("pacs", "add", "--type", "dicomweb", "--aet", "cloud", "--name", "Cloud", "--url",
                             "https://pacs.example/dicom-web", "--no-stow", "--header", "X-Practice: 7")
    assert code == 0 and "lowercase" in err
    listed = json.loads(run_cli("pacs", "list", "--json")[1])
    assert [c["badge"] for c in listed["configs"]] == ["T", "DW"]
    assert listed["configs"][0]["dimse"]["mwl_charset"] == "ISO_IR 100"
    assert listed["configs"][1]["dicomweb"]["headers"] == [["X-Practice", "7"]]
    code, _, err = run_cli("pacs", "edit", "ORTHANC", "--type", "dicomweb")
    assert code == 1 and "type of a configuration cannot change" in err
    code, _, err = run_cli("pacs", "edit", "ORTHANC", "--url", "https://x")
    assert code == 1 and err.strip() == "error: --url does not apply to a Classic DICOM (TCP) configuration."
    code, _, err = run_cli("pacs", "edit", "ORTHANC", "--port", "70000")
    assert code == 1 and err.strip() == "error: The port must be from 1 to 65535 (not 70000)."
    assert run_cli("pacs", "edit", "Practice PACS", "--no-store", "--retrieve-method", "move")[0] == 0
    shown = json.loads(run_cli("pacs", "show", "ORTHANC", "--json")[1])
    assert shown["functions"] == ["C-ECHO", "C-FIND", "C-MOVE", "Worklist"]
    code, _, err = run_cli("pacs", "add", "--type", "dimse", "--aet", "ORTHANC ", "--name", "X", "--host", "h")
    assert code == 1 and "already used" in err
    code, _, err = run_cli("pacs", "add", "--type", "dimse", "--aet", "A" * 17, "--name", "X", "--host", "h")
    assert code == 1 and "at most 16" in err
    assert run_cli("pacs", "transfer", "off")[0] == 0 and not PacsConfigs.load().allow_transfer
    assert run_cli("pacs", "remove", "cloud")[0] == 0
    assert [c.aet for c in PacsConfigs.load().configs] == ["ORTHANC"]


def test_cli_secret_from_stdin(run_cli, lightbox_home, monkeypatch):
    import io

    monkeypatch.setenv("LIGHTBOX_SECRETS", "file")
    monkeypatch.setattr("sys.stdin", io.StringIO("p@ss word\n"))
    code, out, err = run_cli("pacs", "add", "--type", "dicomweb", "--aet", "CLOUD", "--name", "Cloud", "--url",
                             "https://pacs.example/rs", "--auth", "basic", "--user", "vet", "--secret-stdin")
    assert code == 0, err
    configs = PacsConfigs.load()
    assert configs.secret(configs.find("CLOUD")) == "p@ss word"
    assert "p@ss" not in pc.config_file().read_text() and "p@ss" not in out
