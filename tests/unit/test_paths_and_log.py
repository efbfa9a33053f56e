import logging

from app import log, paths


def test_lightbox_home_moves_every_folder(lightbox_home):
    for folder in (paths.config_dir(), paths.data_dir(), paths.cache_dir(), paths.log_dir()):
        assert lightbox_home in folder.parents
        assert folder.is_dir()


def test_without_lightbox_home_the_per_user_folders_are_used(monkeypatch, tmp_path):
    monkeypatch.delenv("LIGHTBOX_HOME")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg-config"))
    assert paths.config_dir() == tmp_path / "xdg-config" / "Lightbox"


def test_the_sample_study_is_found():
    assert (paths.sample_study() / "dx" / "thorax_lateral.dcm").is_file()


def test_a_frozen_app_finds_its_resources_in_the_bundle(monkeypatch, tmp_path):
    (tmp_path / "resources" / "sample").mkdir(parents=True)
    monkeypatch.setattr("sys._MEIPASS", str(tmp_path), raising=False)
    assert paths.sample_study() == tmp_path / "resources" / "sample"


def test_secrets_are_redacted():
    line = ("GET https://bucket.s3.amazonaws.com/a.dcm?X-Amz-Credential=AKIA%2F1&X-Amz-Signature=deadbeef"
            "&X-Amz-Expires=300 Authorization: Bearer eyJhbGc.x.y password=hunter2 https://bob:s3cret@pacs/x")
    out = log.redact(line)
    for secret in ("deadbeef", "AKIA", "eyJhbGc", "hunter2", "s3cret"):
        assert secret not in out
    assert "X-Amz-Expires=300" in out and "bucket.s3.amazonaws.com/a.dcm" in out
    assert log.redact("/etc/passwd: not a DICOM file") == "/etc/passwd: not a DICOM file"


def test_the_log_file_is_written_redacted(lightbox_home):
    log.setup()
    logging.getLogger("app.test").warning("download failed: https://x/y?sig=abc123&se=2026")
    for handler in logging.getLogger("app").handlers:
        handler.flush()
    text = log.log_file().read_text()
    assert "download failed" in text and "abc123" not in text
    assert lightbox_home in log.log_file().parents
