"""XLSX: one section per sheet, headed by the sheet's name, its non-empty rows as "cell | cell" lines."""

import datetime
import io
import itertools
from collections.abc import Iterable, Iterator

import openpyxl

from kb.ingestion.document import DocumentBuilder
from kb.ingestion.errors import DocumentTooLarge


class _CellBudget:
    """How many more cells the workbook may make us read, empty ones included.

    Empty cells and rows add no text, so the character limit alone would not stop a file
    made of millions of them from keeping the worker busy; the budget is the character limit,
    as if every cell cost at least the one character of a separator.
    """

    def __init__(self, cells: int) -> None:
        self.limit = cells
        self.left = cells

    def spend(self, cells: int) -> None:
        self.left -= cells
        if self.left < 0:
            raise DocumentTooLarge(
                f"The workbook has more than {self.limit:,} cells, the most one upload may hold."
            )


def extract_excel(data: bytes, builder: DocumentBuilder) -> str:
    # Read-only mode streams each sheet's XML instead of building every cell in memory.
    workbook = openpyxl.load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    try:
        budget = _CellBudget(builder.max_chars)
        for sheet in workbook.worksheets:
            # The stored dimensions may claim a million rows by 16,384 columns, and openpyxl
            # would pad every row to them; forgetting them reads only the cells present.
            sheet.reset_dimensions()
            lines = _row_lines(sheet.iter_rows(values_only=True), budget)
            # An empty sheet adds nothing, not even its name: a blank workbook is an empty document.
            first_line = next(lines, None)
            if first_line is not None:
                builder.add_heading(sheet.title, level=1)
                builder.add_lines(itertools.chain([first_line], lines))
        return workbook.properties.title or ""
    finally:
        workbook.close()


def _row_lines(rows: Iterable[tuple[object, ...]], budget: _CellBudget) -> Iterator[str]:
    """Each non-empty row as a "cell | cell" line without its trailing empty cells."""
    for row in rows:
        budget.spend(max(len(row), 1))
        cells = [_cell_text(value) for value in row]
        while cells and not cells[-1]:
            cells.pop()
        if cells:
            yield " | ".join(cells)


def _cell_text(value: object) -> str:
    """A cell's value as a sheet shows it: whole numbers without ".0", dates without midnight."""
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, datetime.datetime) and value.time() == datetime.time():
        return value.date().isoformat()
    if isinstance(value, datetime.date | datetime.time):
        return value.isoformat()
    return str(value)
