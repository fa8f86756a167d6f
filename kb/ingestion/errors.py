"""Why a file could not be turned into text, in words meant for the curator who uploaded it.

Every failure of `parse_document` is a `ParseError`; anything else escaping it is a bug.
"""


class ParseError(Exception):
    """A file that cannot be parsed; `str(error)` is the reason to show the curator."""


class UnsupportedFormat(ParseError):
    """The content is not one of the formats we read (whatever the file name says)."""


class CorruptDocument(ParseError):
    """The content claims a supported format but is damaged, truncated or malformed."""


class EncryptedDocument(ParseError):
    """The document is password-protected, so its text cannot be read."""


class EmptyDocument(ParseError):
    """The document was read but holds no text (for example a scan without a text layer)."""


class DocumentTooLarge(ParseError):
    """The document exceeds a size limit that protects the worker (text length, pages, unpacked size)."""
