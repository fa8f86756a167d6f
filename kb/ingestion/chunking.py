"""Token-aware sliding windows over sentences: the chunks that search finds and answers cite.

Windows are measured in word pieces of the embedding model, so a chunk never exceeds what the
model reads. A window ends at a sentence boundary; only a sentence longer than a whole window
is cut (at word-piece boundaries). Windows never cross a heading, so each chunk has one
heading path, and consecutive windows of a section share `overlap` tokens of whole sentences.
"""

import bisect
from collections.abc import Callable
from dataclasses import dataclass, field

from kb.ingestion.document import Heading, ParsedDocument
from kb.ingestion.sentences import Sentence, split_sentences

TokenCounter = Callable[[list[str]], list[int]]
TokenSpans = Callable[[str], list[tuple[int, int]]]


@dataclass(frozen=True)
class ChunkWindow:
    """One chunk: `text` is exactly `document.text[char_start:char_end]`."""

    text: str
    char_start: int
    char_end: int
    page: int | None
    heading_path: list[str]
    language: str
    entities: list[dict] = field(default_factory=list)
    # (start, end) of each sentence (or part of an overlong one), offsets within `text`.
    sentences: list[tuple[int, int]] = field(default_factory=list)


@dataclass
class _Piece:
    """A sentence, or a window-sized part of an overlong one, with its length in tokens."""

    start: int
    end: int
    tokens: int
    sentence: Sentence


def chunk_document(
    document: ParsedDocument,
    *,
    window: int,
    overlap: int,
    count_tokens: TokenCounter,
    token_spans: TokenSpans,
) -> list[ChunkWindow]:
    if not 0 <= overlap < window:
        raise ValueError(f"overlap ({overlap}) must be at least 0 and smaller than the window ({window})")
    chunks = []
    page_starts = [page.char_start for page in document.pages]
    for start, end, heading_path in sections(document):
        sentences = split_sentences(document.text, start, end)
        pieces = _pieces(document.text, sentences, window, overlap, count_tokens, token_spans)
        for group in _pack(pieces, window, overlap):
            chunks.append(_chunk(document, page_starts, group, heading_path))
    return chunks


def sections(document: ParsedDocument) -> list[tuple[int, int, list[str]]]:
    """(start, end, heading path) of the text under each heading, and of any text before the first."""
    boundaries = [heading.char_offset for heading in document.headings] + [len(document.text)]
    result = []
    if not document.headings or document.headings[0].char_offset > 0:
        result.append((0, boundaries[0], []))
    stack: list[Heading] = []
    for heading, end in zip(document.headings, boundaries[1:], strict=True):
        while stack and stack[-1].level >= heading.level:
            stack.pop()
        stack.append(heading)
        result.append((heading.char_offset, end, [h.heading_text for h in stack]))
    # A heading with nothing under it but subheadings adds no passage of its own; its text
    # still reaches the chunks below it through their heading paths.
    return [
        (start, end, path)
        for start, end, path in result
        if document.text[start:end].strip() not in ("", path[-1] if path else "")
    ]


def _pieces(
    text: str,
    sentences: list[Sentence],
    window: int,
    overlap: int,
    count_tokens: TokenCounter,
    token_spans: TokenSpans,
) -> list[_Piece]:
    counts = count_tokens([text[s.start : s.end] for s in sentences]) if sentences else []
    pieces = []
    for sentence, tokens in zip(sentences, counts, strict=True):
        if tokens <= window:
            pieces.append(_Piece(sentence.start, sentence.end, tokens, sentence))
            continue
        # Too long for any window: cut at word pieces, each part overlapping the previous one.
        spans = token_spans(text[sentence.start : sentence.end])
        for first in range(0, len(spans), window - overlap):
            part = spans[first : first + window]
            start, end = sentence.start + part[0][0], sentence.start + part[-1][1]
            pieces.append(_Piece(start, end, len(part), sentence))
            if first + window >= len(spans):
                break
    return pieces


def _pack(pieces: list[_Piece], window: int, overlap: int) -> list[list[_Piece]]:
    """Greedy windows of whole pieces; each new window starts with the previous one's tail
    of at most `overlap` tokens, as long as the next piece still fits beside it."""
    groups: list[list[_Piece]] = []
    current: list[_Piece] = []
    tokens = 0
    for piece in pieces:
        if current and tokens + piece.tokens > window:
            groups.append(current)
            carried: list[_Piece] = []
            carried_tokens = 0
            for previous in reversed(current):
                if carried_tokens + previous.tokens > overlap:
                    break
                carried.insert(0, previous)
                carried_tokens += previous.tokens
            while carried and carried_tokens + piece.tokens > window:
                carried_tokens -= carried.pop(0).tokens
            current, tokens = carried, carried_tokens
        current.append(piece)
        tokens += piece.tokens
    if current:
        groups.append(current)
    return groups


def _chunk(
    document: ParsedDocument, page_starts: list[int], group: list[_Piece], heading_path: list[str]
) -> ChunkWindow:
    start, end = group[0].start, group[-1].end
    languages: dict[str, int] = {}
    entities: dict[tuple[str, str], dict] = {}
    for piece in group:
        language = piece.sentence.language
        languages[language] = languages.get(language, 0) + piece.end - piece.start
        for entity in piece.sentence.entities:
            if start <= entity.start and entity.end <= end:
                entities.setdefault((entity.text, entity.label), {"text": entity.text, "label": entity.label})
    return ChunkWindow(
        text=document.text[start:end],
        char_start=start,
        char_end=end,
        page=_page_at(document, page_starts, start),
        heading_path=heading_path,
        language=max(languages, key=languages.get),
        entities=list(entities.values()),
        sentences=[(piece.start - start, piece.end - start) for piece in group],
    )


def _page_at(document: ParsedDocument, page_starts: list[int], offset: int) -> int | None:
    """The page whose span holds `offset`; spans are ordered, so a bisection finds it."""
    index = bisect.bisect_right(page_starts, offset) - 1
    if index >= 0 and offset < document.pages[index].char_end:
        return document.pages[index].page_number
    return None
