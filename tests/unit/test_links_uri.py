"""Parsing lightbox:// links: what they ask for, and what they are refused."""

from urllib.parse import quote, quote_plus

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.links.uri import (
    DicomGet, DicomRs, LinkError, OpenImageUrl, check_url, parse, redact_url,
)

PRESIGNED = ("https://bucket.s3.eu-west-1.amazonaws.com/studies/x%20ray.dcm?X-Amz-Algorithm=AWS4-HMAC-SHA256"
             "&X-Amz-Credential=AKIA%2F20261122%2Feu-west-1%2Fs3%2Faws4_request&X-Amz-Expires=300"
             "&X-Amz-Signature=ab%2Bcd%2Fef%3D%3D")


def open_link(location: str) -> str:
    return "lightbox://open-image-url/?location=" + quote(location, safe="")


def test_open_image_url_decodes_the_location_exactly_once():
    (command,) = parse(open_link(PRESIGNED)).commands
    assert command == OpenImageUrl(PRESIGNED)  # %2B, %2F, %3D of the signature survive


def test_an_unencoded_location_is_taken_whole():
    (command,) = parse("lightbox://open-image-url/?location=" + PRESIGNED).commands
    assert command.location == PRESIGNED


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), max_size=60),
       st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789%+/=-_.~", max_size=40))
def test_any_location_round_trips(path, signature):
    location = f"https://example.org/{quote(path)}?sig={signature}&b=1"
    assert parse(open_link(location)).commands == (OpenImageUrl(location),)


def test_weasis_get_form_encoded_as_a_whole():
    manifest = "https://pacs.example/weasis-pacs-connector/manifest?studyUID=1.2.3&token=a%2Bb"
    uri = "lightbox://?" + quote_plus(f'$dicom:get -w "{manifest}"')
    assert parse(uri).commands == (DicomGet((manifest,)),)


def test_weasis_get_with_plain_spaces_and_several_commands():
    uri = ('lightbox://?$dicom:get -w "https://a.example/m1.xml.gz" $dicom:get --wado=https://b.example/m2 '
           '$dicom:rs --url "https://c.example/dicom-web" -r "studyUID=1.2.3" -r patientID=VET-1 '
           '--query-ext "includefield=all" -H "Authorization: Bearer s3cr3t" -H "X-Practice: 42"')
    link = parse(uri.replace(" ", "%20"))
    get1, get2, rs = link.commands
    assert get1 == DicomGet(("https://a.example/m1.xml.gz",)) and get2 == DicomGet(("https://b.example/m2",))
    assert rs == DicomRs("https://c.example/dicom-web", (("studyUID", "1.2.3"), ("patientID", "VET-1")),
                         "includefield=all", "", (("Authorization", "Bearer s3cr3t"), ("X-Practice", "42")))


def test_weasis_config_is_ignored_with_a_warning():
    link = parse('lightbox://?$dicom:get -w "https://a.example/m" $weasis:config pro="weasis.theme dark"')
    assert len(link.commands) == 1 and "ignores" in link.warnings[0]


def test_quotes_and_escapes_never_reach_a_shell():
    link = parse('lightbox://?$dicom:get -w "https://a.example/m?q=a b;$(rm -rf ~)\\"x"')
    assert link.commands[0].manifests == ('https://a.example/m?q=a b;$(rm -rf ~)"x',)


@pytest.mark.parametrize("uri, message", [
    ("lightbox://open-image-url/?location=http%3A%2F%2Fpacs.example%2Fx.dcm", "only https"),
    ("lightbox://open-image-url/?location=file%3A%2F%2F%2Fetc%2Fpasswd", "file on this computer"),
    ("lightbox://open-image-url/?location=C%3A%5CWindows%5Cx.dcm", "file on this computer"),
    ("lightbox://open-image-url/?location=ftp%3A%2F%2Fa.example%2Fx", "'ftp:'"),
    ("lightbox://open-image-url/?location=", "no image address"),
    ("lightbox://open-image-url/", "no image address"),
    ("lightbox://?$dicom:get -l /home/vet/studies", "read files on this computer"),
    ("lightbox://?$dicom:get -w file:///etc/passwd", "file on this computer"),
    ("lightbox://?$dicom:get", "needs a manifest"),
    ("lightbox://?$dicom:get -w", "needs a value"),
    ("lightbox://?$dicom:get -x https://a.example/m", "option Lightbox does not know"),
    ("lightbox://?$system:exec calc.exe", "does not know"),
    ("lightbox://?calc.exe", "must start with '$'"),
    ('lightbox://?$dicom:get -w "https://a.example/m', "cannot be read"),
    ("lightbox://?$dicom:rs --url https://a.example/rs", "what to retrieve"),
    ("lightbox://?$dicom:rs -r studyUID=1.2", "exactly one DICOMweb address"),
    ("lightbox://?$dicom:rs --url https://a.example/rs -r shell=ls", "does not know the key"),
    ('lightbox://?$dicom:rs --url https://a.example/rs -r studyUID=1 -H "NoColon"', "Name: value"),
    ("weasis://?$dicom:get -w https://a.example/m", "Not a Lightbox link"),
    ("lightbox://", "asks for nothing"),
])
def test_refused_links_say_why(uri, message):
    with pytest.raises(LinkError, match=message.replace("(", r"\(").replace("$", r"\$")):
        parse(uri)


def test_http_to_this_computer_only_when_the_setting_allows():
    uri = open_link("http://127.0.0.1:8042/x.dcm")
    with pytest.raises(LinkError, match="allow_http_loopback"):
        parse(uri)
    assert parse(uri, allow_http_loopback=True).commands[0].location == "http://127.0.0.1:8042/x.dcm"
    for host in ("localhost", "[::1]", "127.1.2.3"):
        assert check_url(f"http://{host}/a", allow_http_loopback=True)
    with pytest.raises(LinkError, match="only https"):
        check_url("http://10.0.0.5/a", allow_http_loopback=True)


def test_oversized_links_are_refused_and_long_ones_warned_about():
    long = open_link("https://a.example/x?" + "a" * 2100)
    assert "Windows cuts links" in parse(long).warnings[0]
    with pytest.raises(LinkError, match="too long"):
        parse(open_link("https://a.example/x?" + "a" * 17000))


def test_secrets_are_masked_in_reprs_and_messages():
    link = parse(open_link(PRESIGNED))
    assert "ab%2Bcd" not in repr(link) and "X-Amz-Signature=***" in repr(link)
    rs = parse('lightbox://?$dicom:rs --url https://u:pw@a.example/rs -r studyUID=1 -H "Authorization: Bearer tok"')
    assert "tok" not in repr(rs) and "pw" not in repr(rs)
    assert redact_url("https://user:pw@a.example/x?sig=1&b=2#frag") == "https://user:***@a.example/x?sig=***&b=***"
    with pytest.raises(LinkError) as error:
        parse(open_link("http://pacs.example/x?signature=SECRET"))
    assert "SECRET" not in str(error.value)
