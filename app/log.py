"""The log file: tracebacks go here, never to the user, and secrets are redacted on the way."""

import logging
import logging.handlers
import re

from app import paths

_SECRET_PATTERNS = [
    # Signed-URL query parameters (S3, GCS, Azure) and common token/password parameters.
    re.compile(
        r"(?i)([?&](?:x-amz-[a-z-]*signature|x-amz-security-token|x-amz-credential|x-goog-signature|"
        r"x-goog-credential|signature|sig|se|st|skoid|sktid|skt|ske|sks|skv|token|access_token|"
        r"api_key|apikey|key|password|pass|secret)=)[^&#\s'\"]*"
    ),
    re.compile(r"(?i)(authorization\s*[:=]\s*(?:bearer|basic|token)?\s*)[^\s'\",}]+"),
    re.compile(r"(?i)((?<![/\\.\w-])(?:password|passwd|secret|token)\s*[:=]\s*)[^\s'\",}&]+"),
    re.compile(r"(?i)(https?://[^/\s:@]+:)[^@\s/]+(@)"),
]


def redact(text: str) -> str:
    for pattern in _SECRET_PATTERNS:
        if pattern.groups == 2:
            text = pattern.sub(lambda m: m.group(1) + "***" + m.group(2), text)
        else:
            text = pattern.sub(lambda m: m.group(1) + "***", text)
    return text


class _RedactingFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


_configured = False
_handler: logging.Handler | None = None


def setup(level: int = logging.INFO) -> None:
    """Send the 'app' loggers and library warnings to lightbox.log in the log folder (rotated at 2 MB).
    Called again with LIGHTBOX_HOME changed, it moves to the new folder."""
    global _configured, _handler
    target = str(log_file())
    if _configured and _handler is not None and getattr(_handler, "baseFilename", None) == target:
        return
    _configured = True
    handler = logging.handlers.RotatingFileHandler(target, maxBytes=2_000_000, backupCount=3,
                                                   encoding="utf-8", delay=True)
    handler.setFormatter(_RedactingFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger("app")
    warnings_log = logging.getLogger("py.warnings")
    for logger in (root, warnings_log):
        if _handler is not None:
            logger.removeHandler(_handler)
        logger.addHandler(handler)
    if _handler is not None:
        _handler.close()
    _handler = handler
    root.setLevel(level)
    # Library warnings (pydicom's about odd values) belong in the log, not on the terminal.
    logging.captureWarnings(True)
    warnings_log.propagate = False


def log_file():
    return paths.log_dir() / "lightbox.log"
