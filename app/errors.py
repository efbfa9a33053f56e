"""Errors that cross floors. Every message is written for the person using Lightbox."""


class LightboxError(Exception):
    """Base of every error a user may see; str(error) is the whole message."""


class FileProblem(LightboxError):
    """A file that cannot be used; the message names the file."""

    def __init__(self, source: str, reason: str):
        self.source = source
        self.reason = reason
        super().__init__(f"{source}: {reason}" if source else reason)


class NotDicomError(FileProblem):
    pass


class TruncatedFileError(FileProblem):
    pass


class NoPixelDataError(FileProblem):
    pass


class UnsupportedTransferSyntaxError(FileProblem):
    pass


class PixelDataError(FileProblem):
    """Pixel data present but unusable: too short, inconsistent attributes, decoder failure."""


class UsageError(LightboxError):
    """A request that does not make sense (bad frame number, unknown preset ...)."""


class Cancelled(LightboxError):
    def __init__(self, message: str = "Cancelled"):
        super().__init__(message)
