"""lightbox:// links: what they ask for, checked before anything is fetched.

Two forms:
  lightbox://open-image-url/?location=<percent-encoded URL>
  lightbox://?$dicom:get -w "<manifest URL>" $dicom:rs --url "<base>" -r "studyUID=..." -H "Name: value"
The second is Weasis's command syntax, often form-encoded as a whole ('+' for spaces). Commands are
split with a shell-like tokenizer (quotes, backslash escapes) and never reach a shell.
"""

from __future__ import annotations

import ipaddress
import shlex
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, unquote, unquote_plus, urlencode, urlsplit, urlunsplit

from app.errors import LightboxError

SCHEME = "lightbox"
MAX_LINK = 16 * 1024
WINDOWS_SHELL_LIMIT = 2083
_LOOPBACK_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost"}


class LinkError(LightboxError):
    """A link that cannot be followed; the message says why, with secrets masked."""


@dataclass(frozen=True)
class OpenImageUrl:
    """Download one DICOM, JPEG or PNG file."""
    location: str

    def __repr__(self) -> str:
        return f"OpenImageUrl({redact_url(self.location)})"


@dataclass(frozen=True)
class DicomGet:
    """Weasis $dicom:get: one or more XML manifests (plain or gzip) listing what to download."""
    manifests: tuple[str, ...]

    def __repr__(self) -> str:
        return f"DicomGet({', '.join(redact_url(m) for m in self.manifests)})"


@dataclass(frozen=True)
class DicomRs:
    """Weasis $dicom:rs: QIDO-RS at `url` for each request ("studyUID=...", "patientID=..."), then WADO-RS."""
    url: str
    requests: tuple[tuple[str, str], ...]
    query_ext: str = ""
    retrieve_ext: str = ""
    headers: tuple[tuple[str, str], ...] = ()

    def __repr__(self) -> str:
        return (f"DicomRs({redact_url(self.url)}, {list(self.requests)}, "
                f"headers={[redact_header(n, v) for n, v in self.headers]})")


Command = OpenImageUrl | DicomGet | DicomRs


@dataclass(frozen=True)
class Link:
    commands: tuple[Command, ...]
    warnings: tuple[str, ...] = field(default_factory=tuple)


# -- URLs -----------------------------------------------------------------------------------------

def is_loopback(host: str) -> bool:
    host = (host or "").strip("[]").lower()
    if host in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_url(url: str, *, allow_http_loopback: bool = False, what: str = "The link") -> str:
    """The URL if Lightbox may fetch it: https anywhere, http only to this computer and only when allowed."""
    try:
        parts = urlsplit(url.strip())
        host = parts.hostname or ""
        parts.port  # noqa: B018 - raises on a malformed port
    except ValueError:
        raise LinkError(f"{what} points to a malformed address ({redact_url(url)}).") from None
    scheme = parts.scheme.lower()
    if scheme == "https" and host:
        return url.strip()
    if scheme == "http" and host:
        if not is_loopback(host):
            raise LinkError(f"{what} uses plain http to {host}; only https is allowed, so nothing was downloaded.")
        if not allow_http_loopback:
            raise LinkError(f"{what} uses plain http to this computer ({host}); this is allowed only when the "
                            "setting 'allow_http_loopback' is on.")
        return url.strip()
    if scheme in ("file", "") or len(scheme) == 1:  # a local path, or a Windows drive letter
        raise LinkError(f"{what} points to a file on this computer; links may only download over https.")
    raise LinkError(f"{what} uses '{scheme}:' addresses; only https is allowed.")


def redact_url(url: str) -> str:
    """The URL with every query value and any password masked: fit for logs and messages."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "(a malformed address)"
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, hostport = netloc.rpartition("@")
        netloc = f"{userinfo.split(':', 1)[0]}:***@{hostport}" if ":" in userinfo else f"***@{hostport}"
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        query = urlencode([(k, "***") for k, _ in pairs], safe="*") if pairs else "***"
    return urlunsplit((parts.scheme, netloc, parts.path, query, ""))


def redact_header(name: str, value: str) -> str:
    return f"{name}: ***"


# -- links ----------------------------------------------------------------------------------------

def parse(uri: str, *, allow_http_loopback: bool = False) -> Link:
    """What a lightbox:// link asks for; LinkError for anything malformed, unknown or unsafe."""
    uri = uri.strip()
    if len(uri.encode("utf-8", "surrogatepass")) > MAX_LINK:
        raise LinkError(f"The link is too long ({len(uri):,} characters; at most {MAX_LINK:,} are accepted).")
    prefix = f"{SCHEME}:"
    if not uri.lower().startswith(prefix):
        raise LinkError(f"Not a Lightbox link: it must start with {SCHEME}://")
    warnings = []
    if len(uri) > WINDOWS_SHELL_LIMIT:
        warnings.append(f"The link is {len(uri):,} characters long; Windows cuts links at {WINDOWS_SHELL_LIMIT:,}. "
                        "Put tokens in -H headers or in a manifest instead of the address.")
    rest = uri[len(prefix):].lstrip("/")
    if rest.lower().startswith("open-image-url"):
        commands = (OpenImageUrl(check_url(_location(rest), allow_http_loopback=allow_http_loopback,
                                           what="The image address")),)
    else:
        commands, more = _weasis_commands(rest, allow_http_loopback)
        warnings += more
    if not commands:
        raise LinkError("The link asks for nothing Lightbox can open.")
    return Link(tuple(commands), tuple(warnings))


def _location(rest: str) -> str:
    """The location parameter, percent-decoded exactly once (a pre-signed URL's own query survives)."""
    _, _, query = rest.partition("?")
    if not query:
        raise LinkError("The link has no image address (location=...).")
    for n, piece in enumerate(query.split("&")):
        name, _, value = piece.partition("=")
        if unquote(name).lower() != "location":
            continue
        if value.lower().startswith(("http://", "https://")):
            # Not encoded at all: the rest of the link is the address, its own '&'s included.
            return "&".join([value, *query.split("&")[n + 1:]])
        location = unquote(value)
        if not location:
            break
        return location
    raise LinkError("The link has no image address (location=...).")


def _weasis_commands(rest: str, allow_http_loopback: bool) -> tuple[list[Command], list[str]]:
    text = rest[1:] if rest.startswith("?") else rest
    if text.startswith("/?"):
        text = text[2:]
    # Form-encoded as a whole ('+' between words, no space left): decode '+' too; else keep '+'.
    if " " not in text and "%20" not in text and "+" in text:
        text = unquote_plus(text)
    else:
        text = unquote(text)
    try:
        tokens = shlex.split(text, comments=False, posix=True)
    except ValueError as exc:
        raise LinkError(f"The link's commands cannot be read ({exc}).") from None
    groups: list[list[str]] = []
    for token in tokens:
        if token.startswith("$"):
            groups.append([token])
        elif groups:
            groups[-1].append(token)
        else:
            raise LinkError(f"The link's commands must start with '$' (found '{_short(token)}').")
    commands: list[Command] = []
    warnings: list[str] = []
    for group in groups:
        name, args = group[0][1:].lower(), group[1:]
        if name == "dicom:get":
            commands.append(_dicom_get(args, allow_http_loopback))
        elif name == "dicom:rs":
            commands.append(_dicom_rs(args, allow_http_loopback))
        elif name in ("weasis:config", "dicom:close", "view:display"):
            warnings.append(f"'${name}' is a Weasis viewer setting; Lightbox ignores it.")
        else:
            raise LinkError(f"The link asks for '${_short(name)}', which Lightbox does not know; nothing was done.")
    return commands, warnings


def _options(args: list[str], spec: dict[str, str], command: str) -> dict[str, list[str]]:
    """Options as {canonical name: [values]}; spec maps every spelling ('-w', '--wado') to its name."""
    out: dict[str, list[str]] = {}
    i = 0
    while i < len(args):
        arg = args[i]
        key, eq, inline = arg.partition("=") if arg.startswith("--") else (arg, "", "")
        name = spec.get(key)
        if name is None:
            raise LinkError(f"${command} has an option Lightbox does not know: '{_short(key)}'.")
        if eq:
            value = inline
        else:
            if i + 1 >= len(args):
                raise LinkError(f"${command} {key} needs a value.")
            i += 1
            value = args[i]
        out.setdefault(name, []).append(value)
        i += 1
    return out


def _dicom_get(args: list[str], allow_http_loopback: bool) -> DicomGet:
    spec = {"-w": "wado", "--wado": "wado", "-l": "local", "--local": "local", "-r": "remote",
            "--remote": "remote", "-p": "portable", "--portable": "portable", "-i": "iwado", "--iwado": "iwado"}
    options = _options(args, spec, "dicom:get")
    if "local" in options or "portable" in options:
        raise LinkError("The link asks Lightbox to read files on this computer ($dicom:get -l/-p); "
                        "links may only download over https.")
    if "iwado" in options:
        raise LinkError("The link carries its manifest inline ($dicom:get -i); give it as an https address (-w).")
    manifests = [check_url(u, allow_http_loopback=allow_http_loopback, what="The manifest address")
                 for u in options.get("wado", []) + options.get("remote", [])]
    if not manifests:
        raise LinkError("$dicom:get needs a manifest address (-w \"https://...\").")
    return DicomGet(tuple(manifests))


def _dicom_rs(args: list[str], allow_http_loopback: bool) -> DicomRs:
    spec = {"-u": "url", "--url": "url", "-r": "request", "--request": "request", "--query-ext": "query_ext",
            "--retrieve-ext": "retrieve_ext", "-H": "header", "--header": "header",
            "--accept-ext": "accept_ext", "--show-whole-study": "whole"}
    options = _options(args, spec, "dicom:rs")
    urls = options.get("url", [])
    if len(urls) != 1:
        raise LinkError("$dicom:rs needs exactly one DICOMweb address (--url \"https://...\").")
    url = check_url(urls[0], allow_http_loopback=allow_http_loopback, what="The DICOMweb address")
    requests = []
    for request in options.get("request", []):
        for piece in request.split("&"):
            key, eq, value = piece.partition("=")
            key = key.strip()
            if not eq or not value.strip():
                raise LinkError(f"$dicom:rs -r takes 'key=value' (studyUID=..., patientID=...), not '{_short(piece)}'.")
            if key.lower() not in ("studyuid", "patientid", "accessionnumber", "seriesuid", "objectuid"):
                raise LinkError(f"$dicom:rs -r: Lightbox does not know the key '{_short(key)}'.")
            requests.append((key, value.strip()))
    if not requests:
        raise LinkError("$dicom:rs needs what to retrieve (-r \"studyUID=...\" or -r \"patientID=...\").")
    headers = []
    for header in options.get("header", []):
        name, colon, value = header.partition(":")
        name = name.strip()
        if not colon or not name or any(c in name for c in " \r\n\t") or any(c in value for c in "\r\n"):
            raise LinkError(f"$dicom:rs -H takes 'Name: value' (the value is not shown here: {name or '?'}).")
        headers.append((name, value.strip()))
    return DicomRs(url, tuple(requests), "&".join(options.get("query_ext", [])),
                   "&".join(options.get("retrieve_ext", [])), tuple(headers))


def _short(text: str, limit: int = 40) -> str:
    text = "".join(c if c.isprintable() else "?" for c in text)
    return text if len(text) <= limit else text[: limit - 1] + "…"
