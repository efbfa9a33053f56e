"""Weasis XML manifests ($dicom:get): what to download, from where, with which headers.

Two layouts are read, element and attribute names matched without regard to case or namespace:
  v2.5  <manifest> holding one or more <arcQuery baseUrl=...> archives
  v1    a root <wado_query wadoURL=...> (or several <wado_query> under an older <manifest> root)
Each archive holds <httpTag key value/> headers and <Patient>/<Study>/<Series>/<Instance> elements.

The manifest is untrusted: no DOCTYPE or entity is accepted, gzip is inflated under a size limit, and
every address it yields must pass check_url. One refused address refuses the whole manifest, so a
study is never imported half on purpose.
"""

from __future__ import annotations

import re
import zlib
from dataclasses import dataclass, field
from urllib.parse import quote, urljoin
from xml.parsers import expat

from app.dicom.reading import describe_content
from app.links.uri import LinkError, check_url, redact_header, redact_url

MAX_MANIFEST_BYTES = 64 * 1024 * 1024
MAX_INSTANCES = 100_000
WHAT = "An address in the manifest"

_ARCHIVES = ("arcquery", "wado_query")
_ROOTS = ("manifest", *_ARCHIVES)
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:")
_URL_CHARS = "!#$%&'()*+,/:;=?@[]~"
_DROPPED_HEADERS = {"host", "content-length", "transfer-encoding", "connection"}
_EXPIRED_CODES = {
    "accessdenied", "expiredtoken", "requestexpired", "tokenrefreshrequired", "signaturedoesnotmatch",
    "invalidaccesskeyid", "invalidtoken", "authenticationfailed", "authorizationfailure",
    "authorizationpermissionmismatch", "missingsecurityheader", "allaccessdisabled", "accountproblem",
}
_NOT_FOUND_CODES = {"nosuchkey", "nosuchbucket", "nosuchversion", "blobnotfound", "containernotfound",
                    "resourcenotfound"}


class ManifestError(LinkError):
    """A manifest that cannot be used; nothing from it is downloaded."""


@dataclass(frozen=True)
class ManifestItem:
    """One instance to download: its address, the headers its archive asks for, and its UIDs."""
    url: str
    headers: tuple[tuple[str, str], ...]
    study_uid: str
    series_uid: str
    sop_uid: str
    label: str

    def __repr__(self) -> str:
        return (f"ManifestItem({self.label}, {redact_url(self.url)}, "
                f"headers={[redact_header(n, v) for n, v in self.headers]})")


@dataclass(frozen=True)
class Manifest:
    items: tuple[ManifestItem, ...]
    patients: tuple[dict, ...] = field(default_factory=tuple)
    warnings: tuple[str, ...] = field(default_factory=tuple)

    def __repr__(self) -> str:
        return f"Manifest({len(self.items)} items, {len(self.patients)} patients, warnings={list(self.warnings)})"


def parse_manifest(data: bytes, *, source_url: str = "", allow_http_loopback: bool = False) -> Manifest:
    """The instances a Weasis manifest (plain or gzip) lists; ManifestError for anything unusable or unsafe."""
    data = bytes(data)
    if not data.strip():
        raise ManifestError("The manifest is empty: the server sent nothing to read.")
    for _ in range(2):  # a .xml.gz sent with Content-Encoding: gzip arrives compressed twice
        if data[:2] == b"\x1f\x8b":
            data = _gunzip(data)
    if len(data) > MAX_MANIFEST_BYTES:
        raise ManifestError(_too_large())
    data = _xml_start(data)
    reader = _Reader(source_url, allow_http_loopback)
    reader.read(data)
    return reader.result()


# -- bytes ----------------------------------------------------------------------------------------

def _too_large() -> str:
    return f"The manifest is too large (more than {MAX_MANIFEST_BYTES // (1024 * 1024)} MiB of XML)."


def _gunzip(data: bytes) -> bytes:
    out = bytearray()
    rest = data
    while rest[:2] == b"\x1f\x8b":
        inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
        try:
            out += inflater.decompress(rest, MAX_MANIFEST_BYTES + 1 - len(out))
        except zlib.error:
            raise ManifestError("The manifest is a damaged gzip file; it cannot be read.") from None
        if len(out) > MAX_MANIFEST_BYTES:
            raise ManifestError(_too_large())
        if not inflater.eof:
            raise ManifestError("The manifest is an incomplete gzip file (the download may have been cut short).")
        rest = inflater.unused_data
    return bytes(out)


def _xml_start(data: bytes) -> bytes:
    """The data from its first '<' if it looks like XML; otherwise ManifestError saying what it is."""
    if data[:2] in (b"\xff\xfe", b"\xfe\xff"):  # UTF-16 with a byte-order mark: expat reads it as is
        return data
    body = data[3:] if data.startswith(b"\xef\xbb\xbf") else data
    body = body.lstrip(b" \t\r\n")
    what = describe_content(body[:512])
    if what == "an HTML page":
        raise ManifestError("The manifest address returned an HTML page instead of a Weasis manifest "
                            "(often a login page, or a link that has expired).")
    if body.startswith(b"<"):
        return body
    if len(data) >= 132 and data[128:132] == b"DICM":
        what = "a DICOM file"
    raise ManifestError(f"The manifest address returned {what or 'something that is not XML'}, "
                        "not a Weasis manifest.")


# -- XML ------------------------------------------------------------------------------------------

def _local(name: str) -> str:
    return name.rsplit(" ", 1)[-1].lower()


def _text(value: str | None, limit: int = 256) -> str:
    value = "".join(c for c in (value or "") if c.isprintable()).strip()
    return value if len(value) <= limit else value[: limit - 1] + "…"


def _flag(value: str | None) -> bool:
    return (value or "").strip().lower() in ("true", "1", "yes")


@dataclass
class _Archive:
    attrs: dict
    headers: list = field(default_factory=list)
    instances: list = field(default_factory=list)  # (study, series, sop, direct file, ts uid, rate)
    messages: list = field(default_factory=list)  # (title, description) of <Message> elements


class _Reader:
    def __init__(self, source_url: str, allow_http_loopback: bool):
        self.source_url = source_url
        self.allow_http_loopback = allow_http_loopback
        self.stack: list[str] = []
        self.root = ""
        self.archive: _Archive | None = None
        self.archive_depth = 0
        self.archives: list[_Archive] = []
        self.patients: list[dict] = []
        self.study = ""
        self.series: tuple[str, str, int] = ("", "", 0)
        self.count = 0
        self.error_text: dict[str, str] = {}
        self.warnings: list[str] = []

    def read(self, data: bytes) -> None:
        parser = expat.ParserCreate(namespace_separator=" ")
        parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
        parser.StartDoctypeDeclHandler = self._refuse_doctype
        parser.EntityDeclHandler = self._refuse_doctype
        parser.StartElementHandler = self._start
        parser.EndElementHandler = self._end
        parser.CharacterDataHandler = self._characters
        try:
            parser.Parse(data, True)
        except expat.ExpatError as exc:
            raise ManifestError(f"The manifest is incomplete or not valid XML ({expat.ErrorString(exc.code)}, "
                                f"line {exc.lineno}).") from None
        if self.root == "error":
            raise ManifestError(self._server_error())

    def _refuse_doctype(self, *_args) -> None:
        raise ManifestError("The manifest contains a DOCTYPE or ENTITY declaration; Lightbox refuses such "
                            "manifests (they can expand without limit or point at local files).")

    def _start(self, name: str, attributes: dict) -> None:
        tag = _local(name)
        attrs = {_local(k): v for k, v in attributes.items()}
        if not self.stack:
            if tag == "html":
                raise ManifestError("The manifest address returned an HTML page instead of a Weasis manifest "
                                    "(often a login page, or a link that has expired).")
            if tag not in _ROOTS and tag != "error":
                raise ManifestError(f"The manifest address returned an XML document that is not a Weasis "
                                    f"manifest (its root is <{_text(name.rsplit(' ', 1)[-1], 40)}>).")
            self.root = tag
        self.stack.append(tag)
        archive = self.archive
        if tag in _ARCHIVES and archive is None:
            self.archive = _Archive(attrs)
            self.archive_depth = len(self.stack)
        elif archive is None:
            return
        elif tag == "httptag":
            self._header(archive, attrs)
        elif tag == "message":
            title, text = _text(attrs.get("title"), 120), _text(attrs.get("description"), 400)
            if title or text:
                archive.messages.append((title, text))
        elif tag == "patient":
            self._patient(attrs)
        elif tag == "study":
            self.study = (attrs.get("studyinstanceuid") or "").strip()
        elif tag == "series":
            try:
                rate = int((attrs.get("wadocompressionrate") or "0").strip())
            except ValueError:
                rate = 0
            self.series = ((attrs.get("seriesinstanceuid") or "").strip(),
                           (attrs.get("wadotransfersyntaxuid") or "").strip(), rate)
        elif tag == "instance":
            self.count += 1
            if self.count > MAX_INSTANCES:
                raise ManifestError(f"The manifest lists more than {MAX_INSTANCES:,} images; Lightbox refuses "
                                    "manifests that large. Ask for one study at a time.")
            archive.instances.append((self.study, self.series[0], (attrs.get("sopinstanceuid") or "").strip(),
                                      (attrs.get("directdownloadfile") or "").strip(), *self.series[1:]))

    def _end(self, name: str) -> None:
        if self.archive is not None and len(self.stack) == self.archive_depth:
            self.archives.append(self.archive)
            self.archive = None
        tag = self.stack.pop()
        if tag == "study":
            self.study = ""
        elif tag == "series":
            self.series = ("", "", 0)

    def _characters(self, text: str) -> None:
        if self.root == "error" and len(self.stack) == 2:
            key = self.stack[1]
            self.error_text[key] = (self.error_text.get(key, "") + text)[:1000]

    def _header(self, archive: _Archive, attrs: dict) -> None:
        key, value = (attrs.get("key") or "").strip(), attrs.get("value")
        if not key or value is None:
            self.warnings.append("A header in the manifest has no name or no value; it was ignored.")
            return
        if not _TOKEN.fullmatch(key):
            raise ManifestError(f"The manifest asks for a header with an invalid name ('{_text(key, 40)}'); "
                                "the manifest was refused.")
        if any(c in value for c in "\r\n\0"):
            raise ManifestError(f"The manifest's header '{key}' has a line break in its value (the value is not "
                                "shown here); the manifest was refused.")
        if key.lower() in _DROPPED_HEADERS:
            self.warnings.append(f"The manifest's header '{key}' is set by Lightbox itself; it was ignored.")
            return
        archive.headers.append((key, value.strip()))

    def _patient(self, attrs: dict) -> None:
        patient = {"name": _text(attrs.get("patientname")), "id": _text(attrs.get("patientid")),
                   "birth_date": _text(attrs.get("patientbirthdate"), 16), "sex": _text(attrs.get("patientsex"), 16)}
        for key, exact, words in (("species", "patientspeciesdescription", ("species",)),
                                  ("breed", "patientbreeddescription", ("breed",)),
                                  ("owner", "responsibleperson", ("owner", "responsibleperson"))):
            value = attrs.get(exact) or next((v for k, v in attrs.items() if v and any(w in k for w in words)), "")
            if _text(value):
                patient[key] = _text(value)
        if patient not in self.patients:
            self.patients.append(patient)

    def _server_error(self) -> str:
        code, message = _text(self.error_text.get("code"), 60), _text(self.error_text.get("message"), 200)
        said = f" (the server said: {code}{' – ' if code and message else ''}{message})" if code or message else ""
        if code.lower() in _NOT_FOUND_CODES:
            return f"The manifest was not found on the server{said}."
        if code.lower() in _EXPIRED_CODES or "expired" in message.lower() or not code:
            return f"The manifest link has expired or is not authorised{said}. Ask for a new link."
        return f"The server answered with an error instead of a manifest{said}."

    # -- results ----------------------------------------------------------------------------------

    def result(self) -> Manifest:
        items: list[ManifestItem] = []
        seen: set[tuple[str, str, str]] = set()
        skipped = duplicates = 0
        messages = []
        for archive in self.archives:
            messages += archive.messages
            for item in self._items(archive):
                if item is None:
                    skipped += 1
                    continue
                key = (item.study_uid, item.series_uid, item.sop_uid)
                if key in seen:
                    duplicates += 1
                    continue
                seen.add(key)
                items.append(item)
        said = [f"{title}{': ' if title and text else ''}{text}" for title, text in messages]
        warnings = [f"The archive says: {text}" for text in said]
        if skipped:
            warnings.append(f"{skipped:,} image(s) in the manifest have no SOPInstanceUID or no study/series UID "
                            "to ask for; they were skipped.")
        if duplicates:
            warnings.append(f"{duplicates:,} image(s) are listed twice in the manifest; each is downloaded once.")
        warnings += self.warnings
        if not items:
            because = f" (the archive says: {'; '.join(said)})" if said else ""
            if skipped:
                because = f": its {skipped:,} image(s) lack the UIDs needed to ask for them"
            raise ManifestError(f"The manifest lists no images to download{because}.")
        return Manifest(tuple(items), tuple(self.patients), tuple(dict.fromkeys(warnings)))

    def _items(self, archive: _Archive):
        attrs = archive.attrs
        if (attrs.get("querymode") or "").strip().upper() == "DICOM_WEB":
            raise ManifestError("The manifest asks for DICOMweb (WADO-RS) retrieval, which Lightbox does not read "
                                "from manifests; nothing was downloaded.")
        base = self._base(attrs)
        only_sop = _flag(attrs.get("requireonlysopinstanceuid"))
        extra = (attrs.get("additionnalparameters") or attrs.get("additionalparameters") or "").strip()
        headers = tuple(archive.headers)
        for study, series, sop, direct, ts_uid, rate in archive.instances:
            if not sop or (not direct and not only_sop and not (study and series)):
                yield None
                continue
            direct = quote(direct, safe=_URL_CHARS)  # only spaces, non-ASCII and the like are escaped
            if direct and _SCHEME.match(direct):
                url = direct  # a complete address: used exactly as given
            elif base is None:
                raise ManifestError("An archive in the manifest has no address (baseUrl or wadoURL); "
                                    "the manifest was refused.")
            elif direct:
                url = _append(base + direct, extra)  # as Weasis does: the base, then the file's path
            else:
                url = _append(_wado_uri(base, study, series, sop, only_sop, ts_uid, rate), extra)
            try:
                url = check_url(url, allow_http_loopback=self.allow_http_loopback, what=WHAT)
            except LinkError as exc:
                raise ManifestError(f"{exc} The whole manifest was refused.") from None
            yield ManifestItem(url, headers, study, series, sop, f"{study or '?'}/{series or '?'}/{sop}")

    def _base(self, attrs: dict) -> str | None:
        base = (attrs.get("baseurl") or attrs.get("wadourl") or "").strip()
        if not base:
            return None
        base = base.split("#", 1)[0]
        if not _SCHEME.match(base):  # relative (or //host/...): resolved against the manifest's own address
            if not self.source_url:
                raise ManifestError(f"The manifest gives a relative archive address ({redact_url(base)}) and its "
                                    "own address is unknown; the manifest was refused.")
            base = urljoin(self.source_url, base)
        try:
            check_url(base, allow_http_loopback=self.allow_http_loopback, what=WHAT)
        except LinkError as exc:
            raise ManifestError(f"{exc} The whole manifest was refused.") from None
        return base


def _uid(value: str) -> str:
    return quote(value, safe=".")


def _wado_uri(base: str, study: str, series: str, sop: str, only_sop: bool, ts_uid: str, rate: int) -> str:
    parts = ["requestType=WADO"]
    if not only_sop:
        parts += [f"studyUID={_uid(study)}", f"seriesUID={_uid(series)}"]
    parts += [f"objectUID={_uid(sop)}", "contentType=application%2Fdicom"]
    if ts_uid:
        parts.append(f"transferSyntax={quote(ts_uid, safe='.*')}")
        if rate > 0:
            parts.append(f"imageQuality={rate}")
    joiner = "" if base.endswith(("?", "&")) else "&" if "?" in base else "?"
    return base + joiner + "&".join(parts)


def _append(url: str, extra: str) -> str:
    """additionnalParameters appended as given: their encoding (often a token's) is never touched."""
    if not extra:
        return url
    if extra[0] in "&?":
        extra = extra[1:]
    if not extra:
        return url
    return url + ("" if url.endswith(("?", "&")) else "&" if "?" in url else "?") + extra
