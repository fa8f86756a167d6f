"""Safe opening of the ZIP container of Office Open XML files (DOCX, PPTX, XLSX).

The sizes checked here are the ones in the ZIP's central directory. They can be trusted as an
upper bound: Python's zipfile, which python-docx, python-pptx and openpyxl all read through,
never inflates a member past its declared size (and fails its CRC check if the data was longer).
"""

import io
import zipfile

from kb.ingestion.errors import CorruptDocument, DocumentTooLarge

# Real Office files hold tens to a few thousand parts; millions of entries only slow us down.
MAX_MEMBERS = 10_000
# Office XML typically compresses 5–30×; deflate cannot exceed about 1,030×, which zip bombs
# approach. Members under a mebibyte are too small to matter whatever their ratio.
MAX_COMPRESSION_RATIO = 200
RATIO_CHECKED_FROM_BYTES = 1 << 20

_DAMAGED = "The file is damaged or incomplete: its ZIP container cannot be read."


def member_names(data: bytes, *, max_unpacked_bytes: int) -> list[str]:
    """Returns the names inside the ZIP `data` after checking it is safe to unpack.

    Raises `CorruptDocument` for an unreadable archive or a zip bomb's compression ratio, and
    `DocumentTooLarge` when the members would unpack to more than `max_unpacked_bytes`.
    """
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            members = archive.infolist()
    except (zipfile.BadZipFile, ValueError, EOFError) as error:
        raise CorruptDocument(_DAMAGED) from error
    if len(members) > MAX_MEMBERS:
        raise CorruptDocument(
            f"The file's ZIP container holds {len(members):,} parts, more than any real document "
            f"({MAX_MEMBERS:,}); it was not unpacked."
        )
    unpacked = sum(member.file_size for member in members)
    if unpacked > max_unpacked_bytes:
        raise DocumentTooLarge(
            f"The file would unpack to {unpacked / 2**20:,.1f} MiB, more than the limit of "
            f"{max_unpacked_bytes / 2**20:,.1f} MiB; it was not unpacked."
        )
    for member in members:
        if member.file_size >= RATIO_CHECKED_FROM_BYTES and (
            member.file_size > MAX_COMPRESSION_RATIO * max(member.compress_size, 1)
        ):
            raise CorruptDocument(
                f"The part {member.filename!r} is compressed more than {MAX_COMPRESSION_RATIO}-fold, "
                "as zip bombs are, never real documents; the file was not unpacked."
            )
    return [member.filename for member in members]
