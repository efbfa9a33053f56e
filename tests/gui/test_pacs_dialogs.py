"""The PACS configurations dialog: list with badges, type chosen once, editor with messages beside the field,
duplicate, delete, connection test in a job, the 'Allow transfer to PACS' switch."""

import sys
import threading
import types
from dataclasses import dataclass, field

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QDialog, QMessageBox

from app.pacs import secrets
from app.pacs.config import (
    DICOMWEB, DIMSE, ConfigError, DicomWebOptions, DimseOptions, PacsConfig, PacsConfigs, check_ae_title,
    config_file,
)
from app.ui.pacs_dialogs import PacsConfigurationsDialog, PacsEditor, TypeChooser, tone

pytestmark = pytest.mark.gui


@pytest.fixture(autouse=True)
def secrets_in_a_file(monkeypatch):
    monkeypatch.setenv("LIGHTBOX_SECRETS", "file")


@pytest.fixture
def dialog(qtbot):
    dlg = PacsConfigurationsDialog()
    qtbot.addWidget(dlg)
    dlg.show()
    qtbot.waitExposed(dlg)
    return dlg


@pytest.fixture
def two_configs():
    """One configuration of each type in the store (the DICOMweb one with a stored token)."""
    configs = PacsConfigs.load()
    configs.add(PacsConfig(DICOMWEB, "Cloud archive", "CLOUDPACS",
                           dicomweb=DicomWebOptions(url="https://pacs.example.com/dicom-web", auth="bearer")),
                secret="token-123")
    configs.add(PacsConfig(DIMSE, "Clinic PACS", "ORTHANC", dimse=DimseOptions(host="192.168.1.20", port=4242)))
    return configs


@pytest.fixture
def messages(monkeypatch):
    """Message boxes answered without a person: what they said is collected; confirmations say Yes."""
    said = []

    def warning(parent, title, text, *args, **kwargs):
        said.append(text)
        return QMessageBox.StandardButton.Ok

    def question(parent, title, text, *args, **kwargs):
        said.append(text)
        return QMessageBox.StandardButton.Yes

    monkeypatch.setattr(QMessageBox, "warning", warning)
    monkeypatch.setattr(QMessageBox, "question", question)
    return said


def fill(editor: PacsEditor, **values) -> None:
    for key, value in values.items():
        widget = editor.fields[key]
        if isinstance(value, bool):
            widget.setChecked(value)
        elif hasattr(widget, "setPlainText"):
            widget.setPlainText(value)
        elif hasattr(widget, "setValue"):
            widget.setValue(value)
        elif hasattr(widget, "findData") and not widget.isEditable():
            index = widget.findData(value)
            assert index >= 0, f"{key}: {value} is not offered"
            widget.setCurrentIndex(index)
        elif hasattr(widget, "setCurrentText"):
            widget.setCurrentText(value)
        else:
            widget.setText(value)


def settle(qtbot, editor) -> None:
    """Wait for the debounced check that follows typing."""
    qtbot.waitUntil(lambda: not editor._timer.isActive(), timeout=3000)


def saved() -> dict[str, PacsConfig]:
    return {c.aet: c for c in PacsConfigs.load().configs}


# -- new configurations --------------------------------------------------------------------------------

def test_a_new_dicomweb_configuration_is_saved_with_its_password_in_the_secret_store(qtbot, dialog):
    editor = dialog.new_configuration(DICOMWEB)
    assert editor.isVisible() and editor.kind == DICOMWEB and "DICOMweb" in editor.type_label.text()
    assert not editor.ok_button.isEnabled()  # an empty form cannot be saved
    assert editor.message_for("name") == ""  # ... but it is not shouted at before anything was typed
    fill(editor, name="Cloud archive", aet="CLOUDPACS", url="https://pacs.example.com/dicom-web/", auth="basic",
         user="vet", secret="s3cret", headers="X-Api-Key: 1234", stow=False)
    settle(qtbot, editor)
    assert editor.ok_button.isEnabled()
    editor.ok_button.click()
    assert editor.result() == QDialog.DialogCode.Accepted and not editor.isVisible()

    config = saved()["CLOUDPACS"]
    assert config.type == DICOMWEB and config.name == "Cloud archive"
    assert config.dicomweb.url == "https://pacs.example.com/dicom-web"
    assert config.dicomweb.auth == "basic" and config.dicomweb.user == "vet"
    assert config.dicomweb.headers == [("X-Api-Key", "1234")]
    assert config.dicomweb.stow is False and config.dicomweb.qido is True
    assert secrets.get_secret(config.secret_key) == "s3cret"
    assert "s3cret" not in config_file().read_text()
    assert dialog.rows() == [("DW", "Cloud archive", "CLOUDPACS", "https://pacs.example.com/dicom-web",
                              "QIDO-RS · WADO-RS")]
    assert dialog.selected().aet == "CLOUDPACS"


def test_a_new_classic_dicom_configuration_is_saved(qtbot, dialog):
    editor = dialog.new_configuration(DIMSE)
    assert "Classic DICOM (TCP)" in editor.type_label.text()
    assert "secret" not in editor.fields  # no password for DIMSE
    fill(editor, name="Clinic PACS", aet="ORTHANC", host="192.168.1.20", port=4242, local_aets="LIGHTBOX, LB_Q",
         query_aet="LB_Q", retrieve_method="move", move_port=11113, mwl=True, mwl_charset="ISO_IR 100")
    settle(qtbot, editor)
    assert editor.error is None, editor.error
    editor.ok_button.click()
    assert editor.result() == QDialog.DialogCode.Accepted

    o = saved()["ORTHANC"].dimse
    assert (o.host, o.port, o.local_aets, o.test_aet, o.query_aet) == \
        ("192.168.1.20", 4242, ["LIGHTBOX", "LB_Q"], "LIGHTBOX", "LB_Q")
    assert (o.retrieve_method, o.move_port, o.mwl, o.mwl_charset) == ("move", 11113, True, "ISO_IR 100")
    assert dialog.rows()[0][:4] == ("T", "Clinic PACS", "ORTHANC", "192.168.1.20:4242")


def test_new_asks_the_type_first(qtbot, dialog, monkeypatch):
    chooser = TypeChooser()
    qtbot.addWidget(chooser)
    assert set(chooser.buttons) == {DICOMWEB, DIMSE}
    assert chooser.buttons[DICOMWEB].text() == "DICOMweb"
    assert "https://" in chooser.buttons[DICOMWEB].description()
    assert "port" in chooser.buttons[DIMSE].description()
    chooser.buttons[DIMSE].click()
    assert chooser.result() == QDialog.DialogCode.Accepted and chooser.chosen == DIMSE

    monkeypatch.setattr(TypeChooser, "ask", classmethod(lambda cls, parent=None: DIMSE))
    editor = dialog.new_configuration()
    assert editor.kind == DIMSE and "host" in editor.fields and "url" not in editor.fields
    editor.reject()
    monkeypatch.setattr(TypeChooser, "ask", classmethod(lambda cls, parent=None: None))
    assert dialog.new_configuration() is None  # cancelled at the first step


# -- messages beside the field --------------------------------------------------------------------------

def test_an_invalid_ae_title_shows_the_rule_beside_the_field_and_ok_is_off(qtbot, dialog):
    editor = dialog.new_configuration(DIMSE)
    fill(editor, name="Clinic PACS", aet="THIS_TITLE_IS_TOO_LONG", host="pacs.local")
    settle(qtbot, editor)
    with pytest.raises(ConfigError) as rule:
        check_ae_title("THIS_TITLE_IS_TOO_LONG", "PACS AE title")
    assert editor.message_for("aet") == str(rule.value)
    assert "at most 16" in editor.message_for("aet")
    assert editor.messages["aet"].parentWidget() is editor._rows["aet"]  # right under the AE title field
    assert tone(editor, "error") in editor.messages["aet"].styleSheet()
    assert not editor.ok_button.isEnabled()
    editor.accept()  # Enter, or a program, cannot get past it either
    assert editor.isVisible() and saved() == {}

    fill(editor, aet="BAD\\AE")
    settle(qtbot, editor)
    assert "backslash" in editor.message_for("aet") and not editor.ok_button.isEnabled()

    fill(editor, aet="CLINIC")
    settle(qtbot, editor)
    assert editor.message_for("aet") == "" and editor.ok_button.isEnabled()


def test_messages_go_beside_the_field_they_are_about(qtbot, dialog):
    editor = dialog.new_configuration(DICOMWEB)
    fill(editor, name="Cloud", aet="CLOUD", url="ftp://pacs.example.com")
    settle(qtbot, editor)
    assert "https://" in editor.message_for("url") and editor.message_for("aet") == ""
    fill(editor, url="https://pacs.example.com", headers="X-Api-Key 1234")
    settle(qtbot, editor)
    assert "Name: value" in editor.message_for("headers") and not editor.ok_button.isEnabled()
    fill(editor, headers="", source_aet="")
    settle(qtbot, editor)
    assert "source AE title is required" in editor.message_for("source_aet")
    assert editor.message_for("aet") == ""

    other = dialog.new_configuration(DIMSE)
    fill(other, name="PACS", aet="PACS", host="pacs.local", local_aets="LIGHTBOX", test_aet="SOMEONE_ELSE")
    settle(qtbot, other)
    assert "not one of this computer's AE titles" in other.message_for("test_aet")
    fill(other, host="pacs.local:104", test_aet="LIGHTBOX")
    settle(qtbot, other)
    assert "no spaces, slashes or ports" in other.message_for("host")


def test_a_lowercase_ae_title_is_a_warning_and_saves(qtbot, dialog):
    editor = dialog.new_configuration(DICOMWEB)
    fill(editor, name="Test server", aet="orthanc", url="http://localhost:8042/dicom-web")
    settle(qtbot, editor)
    assert "lowercase" in editor.message_for("aet")
    assert tone(editor, "warning") in editor.messages["aet"].styleSheet()
    assert "plain http" in editor.message_for("url")  # beside the URL, in amber too
    assert tone(editor, "warning") in editor.messages["url"].styleSheet()
    assert editor.ok_button.isEnabled()
    editor.ok_button.click()
    assert editor.result() == QDialog.DialogCode.Accepted
    assert "orthanc" in saved()


def test_an_ae_title_used_by_another_configuration_is_refused_with_the_message(qtbot, dialog, two_configs):
    dialog.configs = two_configs
    editor = dialog.new_configuration(DIMSE)
    fill(editor, name="Second", aet="orthanc ", host="10.0.0.2")
    settle(qtbot, editor)
    editor.ok_button.click()
    assert editor.isVisible()
    assert "already used by the configuration 'Clinic PACS'" in editor.message_for("aet")
    assert not editor.ok_button.isEnabled()
    fill(editor, name="Second PACS")  # another field changed: the AE title is still taken
    settle(qtbot, editor)
    assert "already used" in editor.message_for("aet") and not editor.ok_button.isEnabled()
    fill(editor, aet="ORTHANC2")
    settle(qtbot, editor)
    assert editor.message_for("aet") == "" and editor.ok_button.isEnabled()
    editor.ok_button.click()
    assert set(saved()) == {"CLOUDPACS", "ORTHANC", "ORTHANC2"}


def test_without_a_keyring_the_message_is_shown_and_nothing_is_saved(qtbot, dialog, monkeypatch, messages):
    monkeypatch.delenv("LIGHTBOX_SECRETS")
    monkeypatch.setattr(secrets, "_keyring", lambda: None)
    editor = dialog.new_configuration(DICOMWEB)
    fill(editor, name="Cloud", aet="CLOUD", url="https://pacs.example.com", auth="bearer", secret="tok")
    settle(qtbot, editor)
    editor.ok_button.click()
    assert len(messages) == 1 and "No system keyring is available" in messages[0] and "LIGHTBOX_SECRETS" in messages[0]
    assert editor.isVisible() and saved() == {}


# -- edit, duplicate, delete ----------------------------------------------------------------------------

def test_editing_keeps_the_type_and_the_stored_password(qtbot, dialog, two_configs):
    dialog.configs = two_configs
    dialog.refresh()
    assert [r[0] for r in dialog.rows()] == ["DW", "T"]
    dialog.select("CLOUDPACS")
    editor = dialog.edit_configuration()
    assert editor.kind == DICOMWEB and "DICOMweb" in editor.type_label.text()
    assert not any(k in editor.fields for k in ("type", "host"))  # nothing offers another type
    assert editor.fields["secret"].text() == "" and "keep" in editor.fields["secret"].placeholderText()
    assert editor.fields["url"].text() == "https://pacs.example.com/dicom-web"
    fill(editor, name="Cloud archive (new)")
    settle(qtbot, editor)
    editor.ok_button.click()
    assert editor.result() == QDialog.DialogCode.Accepted
    config = saved()["CLOUDPACS"]
    assert config.name == "Cloud archive (new)" and config.type == DICOMWEB
    assert secrets.get_secret(config.secret_key) == "token-123"  # left empty: kept

    with pytest.raises(ValueError):
        PacsEditor(DIMSE, config)  # an editor of another type for it cannot even be made
    with pytest.raises(ConfigError, match="cannot change"):
        two_configs.update("CLOUDPACS", PacsConfig(DIMSE, "x", "CLOUDPACS", dimse=DimseOptions(host="h")))


def test_duplicate_needs_a_new_ae_title(qtbot, dialog, two_configs):
    dialog.configs = two_configs
    dialog.refresh()
    dialog.select("CLOUDPACS")
    dup = dialog.duplicate_configuration()
    assert dup.isVisible() and dup.name.text() == "Cloud archive (copy)"
    assert not dup.ok_button.isEnabled()  # no AE title yet
    dup.aet.setText("cloudpacs")
    dup.aet.textEdited.emit("cloudpacs")
    qtbot.waitUntil(lambda: not dup._timer.isActive())
    assert "lowercase" in dup.message_for("aet") and dup.ok_button.isEnabled()
    dup.ok_button.click()
    assert dup.isVisible() and "already used" in dup.message_for("aet") and not dup.ok_button.isEnabled()
    dup.aet.setText("CLOUDPACS2")
    dup.aet.textEdited.emit("CLOUDPACS2")
    qtbot.waitUntil(lambda: dup.ok_button.isEnabled())
    dup.ok_button.click()
    assert dup.result() == QDialog.DialogCode.Accepted
    copy = saved()["CLOUDPACS2"]
    assert copy.name == "Cloud archive (copy)" and copy.dicomweb.url == "https://pacs.example.com/dicom-web"
    assert secrets.get_secret(copy.secret_key) == "token-123"
    assert dialog.selected().aet == "CLOUDPACS2" and len(dialog.rows()) == 3


def test_delete_asks_then_removes(qtbot, dialog, two_configs, monkeypatch):
    dialog.configs = two_configs
    dialog.refresh()
    dialog.select("CLOUDPACS")
    key = dialog.selected().secret_key
    asked = []
    monkeypatch.setattr(QMessageBox, "question",
                        lambda *a, **k: asked.append(a[2]) or QMessageBox.StandardButton.Cancel)
    assert dialog.delete_configuration() is False
    assert "CLOUDPACS" in saved() and "Cloud archive" in asked[0]
    monkeypatch.setattr(QMessageBox, "question", lambda *a, **k: QMessageBox.StandardButton.Yes)
    assert dialog.delete_configuration() is True
    assert set(saved()) == {"ORTHANC"} and [r[2] for r in dialog.rows()] == ["ORTHANC"]
    assert secrets.get_secret(key) is None


# -- the connection test ------------------------------------------------------------------------------

@dataclass
class FakeResult:
    ok: bool
    message: str
    round_trip_ms: float | None = None
    accepted: list = field(default_factory=list)
    details: list = field(default_factory=list)


@pytest.fixture
def fake_connection(monkeypatch):
    """app.pacs.connection.test_connection replaced: no PACS needed. `gate` holds the test until set."""
    try:
        import app.pacs.connection as connection
    except ImportError:  # not written yet: a stand-in module
        connection = types.ModuleType("app.pacs.connection")
        monkeypatch.setitem(sys.modules, "app.pacs.connection", connection)
    calls, gate = [], threading.Event()
    gate.set()
    state = {"result": FakeResult(True, "Connection established", 12.4, ["C-ECHO", "C-STORE"],
                                  ["Association accepted by ORTHANC"])}

    def test_connection(config, secret=None):
        calls.append((config.aet, secret, threading.current_thread() is threading.main_thread()))
        assert gate.wait(5)
        return state["result"]

    monkeypatch.setattr(connection, "test_connection", test_connection, raising=False)
    return types.SimpleNamespace(calls=calls, gate=gate, state=state)


def test_the_test_button_runs_the_connection_test_in_a_job_and_shows_the_result(qtbot, dialog, two_configs,
                                                                                fake_connection):
    dialog.configs = two_configs
    dialog.refresh()
    dialog.select("ORTHANC")
    fake_connection.gate.clear()
    qtbot.mouseClick(dialog.test_button, Qt.MouseButton.LeftButton)
    job = dialog.test_job
    assert job is not None and not dialog.test_button.isEnabled()
    assert "connecting to 192.168.1.20:4242" in dialog.result_text
    assert dialog.test_configuration() is None  # a second test while one runs is refused
    fake_connection.gate.set()
    qtbot.waitUntil(lambda: dialog.test_job is None, timeout=5000)
    assert fake_connection.calls == [("ORTHANC", None, False)]  # once, off the GUI thread
    assert "Clinic PACS: Connection established · 12 ms" in dialog.result_text
    assert "Accepted: C-ECHO, C-STORE" in dialog.result_text
    assert "Association accepted by ORTHANC" in dialog.result_text
    assert tone(dialog, "ok") in dialog.result_label.styleSheet()
    assert dialog.test_button.isEnabled() and dialog.test_button.text() == "Test"

    fake_connection.state["result"] = FakeResult(False, "Connection failed: connection refused by 10.0.0.9:104",
                                                 details=["Is the PACS running?"])
    dialog.select("CLOUDPACS")
    dialog.test_button.click()
    qtbot.waitUntil(lambda: dialog.test_job is None, timeout=5000)
    assert fake_connection.calls[-1] == ("CLOUDPACS", "token-123", False)  # the stored token goes along
    assert "Cloud archive: Connection failed: connection refused" in dialog.result_text
    assert "Is the PACS running?" in dialog.result_text
    assert tone(dialog, "error") in dialog.result_label.styleSheet()


def test_a_test_that_raises_shows_the_error(qtbot, dialog, two_configs, monkeypatch, fake_connection):
    from app.errors import LightboxError

    import app.pacs.connection as connection

    def broken(config, secret=None):
        raise LightboxError("the PACS address could not be resolved")

    monkeypatch.setattr(connection, "test_connection", broken)
    dialog.configs = two_configs
    dialog.refresh()
    dialog.test_configuration()
    qtbot.waitUntil(lambda: dialog.test_job is None, timeout=5000)
    assert "Connection failed: the PACS address could not be resolved" in dialog.result_text


# -- allow transfer -----------------------------------------------------------------------------------

def test_the_allow_transfer_switch_persists(qtbot, dialog, two_configs):
    dialog.configs = two_configs
    assert dialog.allow_transfer.isChecked() and PacsConfigs.load().allow_transfer
    dialog.allow_transfer.click()
    assert not dialog.allow_transfer.isChecked()
    loaded = PacsConfigs.load()
    assert loaded.allow_transfer is False and loaded.exporting() == []
    assert "no PACS is offered" in dialog.transfer_note.text()

    again = PacsConfigurationsDialog()
    qtbot.addWidget(again)
    assert not again.allow_transfer.isChecked()
    again.allow_transfer.click()
    assert PacsConfigs.load().allow_transfer is True


def test_an_unreadable_file_is_reported_and_not_overwritten(qtbot, messages):
    config_file().write_text("{ not json")
    dlg = PacsConfigurationsDialog()
    qtbot.addWidget(dlg)
    qtbot.waitUntil(lambda: bool(messages))
    assert "cannot be read" in messages[0]
    assert dlg.new_configuration(DIMSE) is None and not dlg.allow_transfer.isEnabled()
    assert config_file().read_text() == "{ not json"


# -- the main window ----------------------------------------------------------------------------------

def test_the_main_window_opens_the_dialog_from_the_pacs_menu(qtbot, monkeypatch):
    from app.ui.main_window import MainWindow

    win = MainWindow()
    qtbot.addWidget(win)
    menus = {a.text().replace("&", ""): a.menu() for a in win.menuBar().actions()}
    assert win.act_pacs in menus["PACS"].actions()
    opened = []
    monkeypatch.setattr(PacsConfigurationsDialog, "exec", lambda self: opened.append(self) or 0)
    win.act_pacs.trigger()
    assert len(opened) == 1 and opened[0].windowTitle() == "PACS configurations"
