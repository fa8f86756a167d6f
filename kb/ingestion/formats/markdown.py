"""Markdown (CommonMark with tables): rendered to plain text, ATX and Setext headings kept."""

import itertools
import re
from collections.abc import Iterable

from markdown_it import MarkdownIt
from markdown_it.token import Token

from kb.ingestion.document import DocumentBuilder
from kb.ingestion.errors import DocumentTooLarge
from kb.ingestion.formats.html_page import extract_html

# markdown-it bounds nesting itself (maxNesting), so hostile input cannot recurse deeply.
_PARSER = MarkdownIt("commonmark").enable("table")
_TEXT_TOKENS = ("text", "text_special", "code_inline")
_BREAK_TOKENS = ("softbreak", "hardbreak")
# Other inline HTML is dropped, but a line break written as a tag still separates lines.
_HTML_LINE_BREAK = re.compile(r"<br\s*/?>", re.I)
# Rendering drops only markup, so a source this many times longer than the character limit
# cannot fit in it. Refusing before parsing matters: markdown-it reads prose at about 0.4 µs a
# character but hostile inline markup ("[[[[…", "*a *a …") at about 20 µs.
_MAX_SOURCE_TO_TEXT_RATIO = 2


def extract_markdown(text: str, builder: DocumentBuilder) -> str:
    if len(text) > _MAX_SOURCE_TO_TEXT_RATIO * builder.max_chars:
        raise DocumentTooLarge(
            f"The Markdown file has {len(text):,} characters, too many for the limit of "
            f"{builder.max_chars:,} characters of text one upload may hold."
        )
    tokens = _PARSER.parse(text)
    list_marker = ""
    for index, token in enumerate(tokens):
        if token.type == "heading_open":
            builder.add_heading(_inline_text(tokens[index + 1]), level=int(token.tag[1:]))
        elif token.type == "paragraph_open":
            # A list item's marker goes before its first paragraph ("- ", "3. ").
            builder.add_block(list_marker + _inline_text(tokens[index + 1]))
            list_marker = ""
        elif token.type == "list_item_open":
            list_marker = f"{token.info}{token.markup} "
        elif token.type == "list_item_close":
            list_marker = ""
        elif token.type in ("fence", "code_block"):
            builder.add_block(token.content)
        elif token.type == "html_block":
            extract_html(token.content, builder)
        elif token.type == "table_open":
            builder.add_lines(_table_rows(itertools.islice(tokens, index, None)))
    return ""


def _inline_text(token: Token) -> str:
    """The plain text of an inline token: markup dropped, images replaced by their alt text."""
    parts = []
    for child in token.children or []:
        if child.type in _TEXT_TOKENS:
            parts.append(child.content)
        elif child.type in _BREAK_TOKENS or (
            child.type == "html_inline" and _HTML_LINE_BREAK.match(child.content)
        ):
            parts.append("\n")
        elif child.type == "image":
            parts.append(_inline_text(child))
    return "".join(parts)


def _table_rows(tokens: Iterable[Token]) -> list[str]:
    """The rows of the table that `tokens` starts with, as "cell | cell" lines."""
    rows: list[str] = []
    cells: list[str] = []
    for token in tokens:
        if token.type == "inline":
            cells.append(_inline_text(token))
        elif token.type == "tr_close":
            rows.append(" | ".join(cells))
            cells = []
        elif token.type == "table_close":
            break
    return rows
