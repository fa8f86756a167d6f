"""Text normalisation applied to every piece of extracted text before it enters a document.

Normalising piece by piece (rather than the joined text afterwards) is what lets the builder
record offsets that stay exact: nothing changes the text once an offset points into it.
"""

import re
import unicodedata

_LINE_BREAKS = re.compile(r"\r\n?|[\x0b\x0c\x85\u2028\u2029]")
# Control characters (NUL above all) and lone surrogates cannot be stored in PostgreSQL text and
# carry no meaning; U+FEFF is a byte-order mark left inside text by concatenated files.
_UNWANTED = re.compile(r"[\x00-\x08\x0e-\x1f\x7f-\x9f\ud800-\udfff\ufeff\ufffe\uffff]")
_BLANK_LINE_RUNS = re.compile(r"\n{3,}")


def normalise_block(text: str) -> str:
    """Returns `text` in NFC with `\\n` newlines, no control characters, no trailing spaces on
    lines, at most one blank line in a row, and no blank lines at either end."""
    text = _UNWANTED.sub("", _LINE_BREAKS.sub("\n", text))
    text = unicodedata.normalize("NFC", text)
    text = "\n".join(line.rstrip() for line in text.split("\n"))
    return _BLANK_LINE_RUNS.sub("\n\n", text).strip("\n")


def normalise_line(text: str) -> str:
    """Returns `text` normalised as by `normalise_block` and folded onto one line, every run of
    whitespace (newlines included) becoming a single space."""
    return " ".join(normalise_block(text).split())
