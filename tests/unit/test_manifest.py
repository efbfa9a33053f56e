"""Weasis manifests: what they list, the addresses built from them, and what they are refused."""

import gzip
import tracemalloc
from xml.sax.saxutils import quoteattr

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.links import manifest as manifest_module
from app.links.manifest import Manifest, ManifestError, ManifestItem, parse_manifest
from app.links.uri import LinkError

NS25 = 'xmlns="http://www.weasis.org/xsd/2.5" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"'
WADO = "requestType=WADO&studyUID={}&seriesUID={}&objectUID={}&contentType=application%2Fdicom"


def v25(*archives: str, ns: str = NS25) -> bytes:
    return f'<?xml version="1.0" encoding="UTF-8"?>\n<manifest {ns} uid="m1">{"".join(archives)}</manifest>'.encode()


def arc(base: str, body: str, **attrs) -> str:
    extra = "".join(f" {k}={quoteattr(v)}" for k, v in attrs.items())
    return f'<arcQuery arcId="a" baseUrl={quoteattr(base)}{extra}>{body}</arcQuery>'


def patient(*studies: str, **attrs) -> str:
    attrs = {"PatientID": "VET-1", "PatientName": "Smith^Rex", **attrs}
    return f'<Patient {" ".join(f"{k}={quoteattr(v)}" for k, v in attrs.items())}>{"".join(studies)}</Patient>'


def study(uid: str, *series: str) -> str:
    return f'<Study StudyInstanceUID="{uid}">{"".join(series)}</Study>'


def series(uid: str, *instances: str, **attrs) -> str:
    extra = "".join(f" {k}={quoteattr(v)}" for k, v in attrs.items())
    return f'<Series SeriesInstanceUID="{uid}" Modality="CR"{extra}>{"".join(instances)}</Series>'


def instance(uid: str, **attrs) -> str:
    extra = "".join(f" {k}={quoteattr(v)}" for k, v in attrs.items())
    return f'<Instance SOPInstanceUID="{uid}" InstanceNumber="1"{extra}/>'


def one_image(base="https://pacs.example/wado", **arc_attrs) -> bytes:
    return v25(arc(base, patient(study("1.2", series("1.2.3", instance("1.2.3.4")))), **arc_attrs))


# -- formats --------------------------------------------------------------------------------------

def test_v25_with_two_archives_and_their_own_headers():
    data = v25(
        arc("https://a.example/wado",
            '<httpTag key="Authorization" value="Bearer aaa"/><httpTag key="X-Practice" value="42"/>'
            + patient(study("1.1", series("1.1.1", instance("1.1.1.1"), instance("1.1.1.2"))))),
        arc("https://b.example/dcm4chee-arc/wado",
            '<httpTag key="Authorization" value="Bearer bbb"/>'
            + patient(study("2.1", series("2.1.1", instance("2.1.1.1"))), PatientID="VET-2", PatientName="Doe^Tom")),
    )
    result = parse_manifest(data)
    assert isinstance(result, Manifest)
    assert [i.url for i in result.items] == [
        "https://a.example/wado?" + WADO.format("1.1", "1.1.1", "1.1.1.1"),
        "https://a.example/wado?" + WADO.format("1.1", "1.1.1", "1.1.1.2"),
        "https://b.example/dcm4chee-arc/wado?" + WADO.format("2.1", "2.1.1", "2.1.1.1"),
    ]
    a1, a2, b1 = result.items
    assert a1.headers == a2.headers == (("Authorization", "Bearer aaa"), ("X-Practice", "42"))
    assert b1.headers == (("Authorization", "Bearer bbb"),)
    assert (b1.study_uid, b1.series_uid, b1.sop_uid, b1.label) == ("2.1", "2.1.1", "2.1.1.1", "2.1/2.1.1/2.1.1.1")
    assert [p["id"] for p in result.patients] == ["VET-1", "VET-2"]
    assert result.warnings == ()


def test_headers_written_after_the_patients_still_apply_to_every_image():
    body = patient(study("1", series("1.1", instance("1.1.1")))) + '<httpTag key="X-Token" value="t"/>'
    (item,) = parse_manifest(v25(arc("https://a.example/wado", body))).items
    assert item.headers == (("X-Token", "t"),)


def test_legacy_v1_wado_query():
    data = ('<?xml version="1.0" encoding="UTF-8" ?>\n'
            '<wado_query xmlns="http://www.weasis.org/xsd" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" '
            'wadoURL="https://pacs.example/wado" requireOnlySOPInstanceUID="false" '
            'additionnalParameters="&amp;session=abc">'
            '<httpTag key="X-Practice" value="7"/>'
            + patient(study("1.2", series("1.2.3", instance("1.2.3.4")))) + "</wado_query>").encode()
    (item,) = parse_manifest(data).items
    assert item.url == "https://pacs.example/wado?" + WADO.format("1.2", "1.2.3", "1.2.3.4") + "&session=abc"
    assert item.headers == (("X-Practice", "7"),)


def test_older_manifest_root_holding_several_wado_query_archives():
    data = (b'<manifest xmlns="http://www.weasis.org/xsd">'
            b'<wado_query arcId="1" wadoURL="https://a.example/wado">'
            + patient(study("1", series("1.1", instance("1.1.1")))).encode() + b"</wado_query>"
            b'<wado_query arcId="2" wadoURL="https://b.example/wado">'
            + patient(study("2", series("2.1", instance("2.1.1")))).encode() + b"</wado_query></manifest>")
    assert [i.url.split("?")[0] for i in parse_manifest(data).items] == ["https://a.example/wado",
                                                                        "https://b.example/wado"]


def test_gzip_manifest_is_read_like_plain_xml():
    plain = one_image()
    assert parse_manifest(gzip.compress(plain)) == parse_manifest(plain)


def test_gzip_twice_is_read_too():
    assert parse_manifest(gzip.compress(gzip.compress(one_image()))).items[0].sop_uid == "1.2.3.4"


def test_without_namespace_and_with_mixed_case_names():
    data = (b'<Manifest><ARCQUERY ARCID="x" BaseURL="https://pacs.example/wado" RequireOnlySopInstanceUid="TRUE">'
            b'<HttpTag Key="X-A" Value="1"/>'
            b'<patient patientID="P7" patientname="Rex" PATIENTSEX="M" PatientBirthdate="20200102">'
            b'<study studyInstanceUID="1.2"><SERIES seriesinstanceuid="1.2.3">'
            b'<instance sopInstanceUID="1.2.3.4"/></SERIES></study></patient></ARCQUERY></Manifest>')
    result = parse_manifest(data)
    (item,) = result.items
    assert item.url == "https://pacs.example/wado?requestType=WADO&objectUID=1.2.3.4&contentType=application%2Fdicom"
    assert item.headers == (("X-A", "1"),)
    assert result.patients == ({"name": "Rex", "id": "P7", "birth_date": "20200102", "sex": "M"},)


def test_a_prefixed_namespace_is_read_too():
    data = (b'<w:manifest xmlns:w="http://www.weasis.org/xsd/2.5">'
            b'<w:arcQuery arcId="a" baseUrl="https://pacs.example/wado"><w:Patient PatientID="1" PatientName="A">'
            b'<w:Study StudyInstanceUID="1"><w:Series SeriesInstanceUID="1.1"><w:Instance SOPInstanceUID="1.1.1"/>'
            b"</w:Series></w:Study></w:Patient></w:arcQuery></w:manifest>")
    assert parse_manifest(data).items[0].sop_uid == "1.1.1"


# -- building addresses ---------------------------------------------------------------------------

@pytest.mark.parametrize("flag, expected", [
    ("true", "https://pacs.example/wado?requestType=WADO&objectUID=1.2.3.4&contentType=application%2Fdicom"),
    ("false", "https://pacs.example/wado?" + WADO.format("1.2", "1.2.3", "1.2.3.4")),
])
def test_require_only_sop_instance_uid(flag, expected):
    assert parse_manifest(one_image(requireOnlySOPInstanceUID=flag)).items[0].url == expected


def test_additional_parameters_are_kept_byte_for_byte():
    params = "&token=ab%2Bcd%2F%3D%3D&x=a+b"
    (item,) = parse_manifest(one_image(additionnalParameters=params)).items
    assert item.url.endswith("contentType=application%2Fdicom" + params)


def test_additional_parameters_without_a_leading_ampersand_still_join_the_query():
    (item,) = parse_manifest(one_image(additionnalParameters="token=t1")).items
    assert item.url.endswith("contentType=application%2Fdicom&token=t1")


def test_a_base_that_already_has_a_query_is_joined_with_an_ampersand():
    (item,) = parse_manifest(one_image("https://pacs.example/wado?aet=VET&key=k%2B1")).items
    assert item.url == "https://pacs.example/wado?aet=VET&key=k%2B1&" + WADO.format("1.2", "1.2.3", "1.2.3.4")


def test_transfer_syntax_and_quality_asked_for_by_the_series():
    body = patient(study("1", series("1.1", instance("1.1.1"),
                                     WadoTransferSyntaxUID="1.2.840.10008.1.2.4.50", WadoCompressionRate="80")))
    (item,) = parse_manifest(v25(arc("https://a.example/wado", body))).items
    assert item.url.endswith("&transferSyntax=1.2.840.10008.1.2.4.50&imageQuality=80")


def test_direct_download_file_relative_is_appended_to_the_base_like_weasis():
    body = patient(study("1", series("1.1", instance("1.1.1", DirectDownloadFile="/files/1.1.1.dcm"))))
    (item,) = parse_manifest(v25(arc("https://cdn.example/share", body, additionnalParameters="&sig=a%2Bb"))).items
    assert item.url == "https://cdn.example/share/files/1.1.1.dcm?sig=a%2Bb"
    assert item.sop_uid == "1.1.1"


def test_direct_download_file_absolute_is_used_exactly_as_given():
    signed = "https://bucket.s3.example/x/1.dcm?X-Amz-Signature=ab%2Bcd&X-Amz-Expires=300"
    body = patient(study("1", series("1.1", instance("1.1.1", DirectDownloadFile=signed),
                                     DirectDownloadThumbnail="thumb/1.jpg")))
    (item,) = parse_manifest(v25(arc("https://pacs.example/wado", body, additionnalParameters="&t=1"))).items
    assert item.url == signed


def test_a_direct_download_file_with_a_space_is_escaped_and_nothing_else_is():
    body = patient(study("1", series("1.1", instance("1.1.1", DirectDownloadFile="DICOM/IM 0001%2B;v=1"))))
    (item,) = parse_manifest(v25(arc("https://cdn.example/share/", body))).items
    assert item.url == "https://cdn.example/share/DICOM/IM%200001%2B;v=1"


def test_images_without_the_uids_a_wado_request_needs_are_explained():
    data = b"<manifest><arcQuery baseUrl='https://a.example/w'><Instance SOPInstanceUID='1'/></arcQuery></manifest>"
    with pytest.raises(ManifestError, match="1 image.*lack the UIDs"):
        parse_manifest(data)


def test_a_relative_base_url_resolves_against_the_manifest_address():
    (item,) = parse_manifest(one_image("../wado"), source_url="https://pacs.example/connector/manifest?id=1").items
    assert item.url.startswith("https://pacs.example/wado?requestType=WADO")


def test_a_relative_base_url_without_a_manifest_address_is_refused():
    with pytest.raises(ManifestError, match="relative"):
        parse_manifest(one_image("wado"))


def test_duplicates_are_downloaded_once_and_images_without_uid_are_skipped_with_warnings():
    body = patient(study("1", series("1.1", instance("1.1.1"), instance("1.1.1"), '<Instance InstanceNumber="3"/>')))
    result = parse_manifest(v25(arc("https://a.example/wado", body)))
    assert [i.sop_uid for i in result.items] == ["1.1.1"]
    assert any("twice" in w for w in result.warnings) and any("skipped" in w for w in result.warnings)


def test_patients_with_species_breed_and_owner():
    body = patient(study("1", series("1.1", instance("1.1.1"))), PatientSex="F", PatientBirthDate="20190304",
                   PatientSpeciesDescription="Canine", PatientBreedDescription="Beagle", ResponsiblePerson="Smith^Ann")
    (p,) = parse_manifest(v25(arc("https://a.example/wado", body))).patients
    assert p == {"name": "Smith^Rex", "id": "VET-1", "birth_date": "20190304", "sex": "F",
                 "species": "Canine", "breed": "Beagle", "owner": "Smith^Ann"}


def test_lenient_species_and_owner_names():
    body = patient(study("1", series("1.1", instance("1.1.1"))), species="Feline", OwnerName="Jones")
    (p,) = parse_manifest(v25(arc("https://a.example/wado", body))).patients
    assert p["species"] == "Feline" and p["owner"] == "Jones" and "breed" not in p


def test_an_archive_message_becomes_a_warning_or_the_error():
    message = '<Message title="Partial" description="2 series are offline" severity="WARN"/>'
    body = message + patient(study("1", series("1.1", instance("1.1.1"))))
    assert parse_manifest(v25(arc("https://a.example/wado", body))).warnings == (
        "The archive says: Partial: 2 series are offline",)
    empty = '<Message title="No images" description="Nothing found for this patient" severity="ERROR"/>'
    with pytest.raises(ManifestError, match="no images.*Nothing found for this patient"):
        parse_manifest(v25(arc("https://a.example/wado", empty)))


def test_a_manifest_without_images_is_an_error():
    with pytest.raises(ManifestError, match="no images"):
        parse_manifest(v25())


def test_dicomweb_query_mode_is_refused_clearly():
    with pytest.raises(ManifestError, match="DICOMweb"):
        parse_manifest(one_image(queryMode="DICOM_WEB"))


def test_items_and_manifest_are_frozen():
    item = parse_manifest(one_image()).items[0]
    with pytest.raises(AttributeError):
        item.url = "https://elsewhere.example/"  # type: ignore[misc]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.from_regex(r"[1-9][0-9]{0,8}(\.[0-9]{1,8}){0,6}", fullmatch=True), min_size=3, max_size=3),
       st.text(alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~%+=&/:", max_size=60),
       st.booleans())
def test_any_uids_and_parameters_round_trip_into_the_address(uids, params, only_sop):
    study_uid, series_uid, sop_uid = uids
    body = patient(study(study_uid, series(series_uid, instance(sop_uid))))
    data = v25(arc("https://pacs.example/wado", body, additionnalParameters="&" + params,
                   requireOnlySOPInstanceUID=str(only_sop).lower()))
    (item,) = parse_manifest(data).items
    query = (f"requestType=WADO&objectUID={sop_uid}&contentType=application%2Fdicom" if only_sop
             else WADO.format(study_uid, series_uid, sop_uid))
    assert item.url == "https://pacs.example/wado?" + query + ("&" + params if params else "")
    assert (item.study_uid, item.series_uid, item.sop_uid) == (study_uid, series_uid, sop_uid)


# -- security -------------------------------------------------------------------------------------

@pytest.mark.parametrize("doctype", [
    '<!DOCTYPE manifest [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;">]>',
    '<!DOCTYPE manifest [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>',
    '<!DOCTYPE manifest SYSTEM "https://evil.example/m.dtd">',
    "<!DOCTYPE manifest>",
])
def test_doctype_and_entities_are_refused(doctype):
    data = one_image().replace(b"<manifest", doctype.encode() + b"\n<manifest", 1)
    with pytest.raises(ManifestError, match="DOCTYPE"):
        parse_manifest(data)


def test_an_undeclared_entity_is_not_valid_xml():
    data = one_image().replace(b'PatientName="Smith^Rex"', b'PatientName="&xxe;"')
    with pytest.raises(ManifestError, match="not valid XML"):
        parse_manifest(data)


@pytest.mark.parametrize("base", ["file:///etc/passwd", "file://server/share/wado", "C:\\pacs\\wado",
                                  "ftp://x.example/w"])
def test_local_and_foreign_bases_refuse_the_whole_manifest(base):
    good = arc("https://ok.example/wado", patient(study("1", series("1.1", instance("1.1.1")))))
    bad = arc(base, patient(study("2", series("2.1", instance("2.1.1")))))
    with pytest.raises(ManifestError) as info:
        parse_manifest(v25(good, bad), source_url="https://ok.example/manifest")
    assert "refused" in str(info.value)
    assert isinstance(info.value, LinkError)


def test_a_local_base_is_refused_even_when_every_image_has_its_own_address():
    body = patient(study("1", series("1.1", instance("1.1.1", DirectDownloadFile="https://cdn.example/1.dcm"))))
    with pytest.raises(ManifestError, match="file on this computer"):
        parse_manifest(v25(arc("file:///var/pacs/", body)))


def test_a_file_direct_download_is_refused():
    body = patient(study("1", series("1.1", instance("1.1.1", DirectDownloadFile="file:///home/vet/.ssh/id_rsa"))))
    with pytest.raises(ManifestError, match="file on this computer"):
        parse_manifest(v25(arc("https://pacs.example/wado", body)))


def test_a_relative_path_against_an_http_manifest_address_is_refused():
    with pytest.raises(ManifestError, match="plain http"):
        parse_manifest(one_image("wado"), source_url="http://pacs.example/manifest")


def test_plain_http_to_another_computer_is_refused_even_when_loopback_is_allowed():
    with pytest.raises(ManifestError, match="plain http to pacs.example"):
        parse_manifest(one_image("http://pacs.example/wado"), allow_http_loopback=True)


def test_plain_http_to_this_computer_only_when_allowed():
    with pytest.raises(ManifestError, match="allow_http_loopback"):
        parse_manifest(one_image("http://127.0.0.1:8042/wado"))
    (item,) = parse_manifest(one_image("http://127.0.0.1:8042/wado"), allow_http_loopback=True).items
    assert item.url.startswith("http://127.0.0.1:8042/wado?requestType=WADO")


def test_oversized_gzip_is_refused_before_it_fills_memory():
    bomb = gzip.compress(b"<manifest>" + b" " * (manifest_module.MAX_MANIFEST_BYTES + 10), compresslevel=9)
    assert len(bomb) < 1024 * 1024
    with pytest.raises(ManifestError, match="too large"):
        parse_manifest(bomb)


def test_gzip_inflation_stops_at_the_limit(monkeypatch):
    bomb = gzip.compress(b"<manifest>" + b" " * (48 * 1024 * 1024), compresslevel=9)
    monkeypatch.setattr(manifest_module, "MAX_MANIFEST_BYTES", 1024 * 1024)
    tracemalloc.start()
    try:
        with pytest.raises(ManifestError, match="too large"):
            parse_manifest(bomb)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 8 * 1024 * 1024


def test_oversized_plain_xml_is_refused(monkeypatch):
    monkeypatch.setattr(manifest_module, "MAX_MANIFEST_BYTES", 1000)
    with pytest.raises(ManifestError, match="too large"):
        parse_manifest(one_image() + b" " * 1000)


def test_truncated_or_damaged_gzip_is_refused():
    packed = gzip.compress(one_image())
    with pytest.raises(ManifestError, match="incomplete"):
        parse_manifest(packed[: len(packed) // 2])
    with pytest.raises(ManifestError, match="damaged"):
        parse_manifest(packed[:10] + b"\x00" * 20 + packed[30:])


def test_too_many_instances_is_refused(monkeypatch):
    monkeypatch.setattr(manifest_module, "MAX_INSTANCES", 3)
    body = patient(study("1", series("1.1", *(instance(f"1.1.{n}") for n in range(4)))))
    with pytest.raises(ManifestError, match="more than 3 images"):
        parse_manifest(v25(arc("https://a.example/wado", body)))


def test_an_html_page_is_named():
    with pytest.raises(ManifestError, match="HTML page"):
        parse_manifest(b"\n<!DOCTYPE html><html><body>Please log in</body></html>")
    with pytest.raises(ManifestError, match="HTML page"):
        parse_manifest(b'<?xml version="1.0"?><html xmlns="http://www.w3.org/1999/xhtml"><body/></html>')


def test_an_expired_s3_link_says_so():
    body = (b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>AccessDenied</Code>'
            b"<Message>Request has expired</Message><X-Amz-Expires>300</X-Amz-Expires>"
            b"<RequestId>ABC</RequestId></Error>")
    with pytest.raises(ManifestError, match="expired or is not authorised.*AccessDenied – Request has expired"):
        parse_manifest(body)


def test_a_missing_s3_object_says_not_found():
    with pytest.raises(ManifestError, match="not found.*NoSuchKey"):
        parse_manifest(b"<Error><Code>NoSuchKey</Code><Message>The specified key does not exist.</Message></Error>")


@pytest.mark.parametrize("body, what", [
    (b'{"manifest": {}}', "a JSON document"),
    (b"%PDF-1.7 ...", "a PDF document"),
    (b"\x00" * 128 + b"DICM" + b"\x00" * 10, "a DICOM file"),
    (b"just some words", "not XML"),
    (b"<rss><channel/></rss>", "root is <rss>"),
    (b"", "empty"),
])
def test_other_content_is_named(body, what):
    with pytest.raises(ManifestError, match=what):
        parse_manifest(body)


def test_truncated_xml_is_refused():
    with pytest.raises(ManifestError, match="incomplete or not valid XML"):
        parse_manifest(one_image()[:-20])


@pytest.mark.parametrize("key, value, match", [
    ("X-Bad Name", "v", "invalid name"),
    ("X-Bad:Name", "v", "invalid name"),
    ("X-Token", "a&#13;&#10;Injected: yes", "line break"),
    ("X-Token", "a&#10;b", "line break"),
])
def test_headers_with_bad_names_or_line_breaks_are_refused(key, value, match):
    body = f'<httpTag key="{key}" value="{value}"/>' + patient(study("1", series("1.1", instance("1.1.1"))))
    with pytest.raises(ManifestError, match=match):
        parse_manifest(v25(arc("https://a.example/wado", body)))


def test_framing_headers_are_dropped_with_a_warning():
    body = '<httpTag key="Host" value="evil.example"/>' + patient(study("1", series("1.1", instance("1.1.1"))))
    result = parse_manifest(v25(arc("https://a.example/wado", body)))
    assert result.items[0].headers == () and "Host" in result.warnings[0]


def test_repr_hides_header_values_and_query_values():
    body = ('<httpTag key="Authorization" value="Bearer SECRET-HEADER"/>'
            + patient(study("1", series("1.1", instance("1.1.1")))))
    result = parse_manifest(v25(arc("https://a.example/wado", body, additionnalParameters="&token=SECRET-QUERY")))
    (item,) = result.items
    assert isinstance(item, ManifestItem)
    for text in (repr(item), str(item), repr(result.items)):
        assert "SECRET" not in text and "1/1.1/1.1.1" in text and "token=***" in text
    assert "SECRET" not in repr(result) and "1 items" in repr(result)
    assert "Authorization: ***" in repr(item)
