"""Sentence boundaries and named entities: spaCy for English, punctuation rules for Chinese."""

import functools
import re
from dataclasses import dataclass, field

from django.conf import settings

from kb.ingestion.language import CHINESE, detect_language

# A Chinese sentence ends at 。！？ (or their ASCII forms) plus any closing quotes or brackets.
CHINESE_SENTENCE = re.compile(r"[^。！？!?]+(?:[。！？!?]+[”’」』）)\"']*)?")
BLOCK_BREAK = re.compile(r"\n\s*\n")
# A sentence ends at . ! ? … or 。！？ (then maybe closing quotes or brackets); one that does not,
# followed by a part starting with a bracket, was cut in the middle (see _rejoin).
SENTENCE_END = re.compile(r"[.!?…。！？][\"'”’)\]）」』》]*$")
CONTINUATION = re.compile(r"^[\[(]")
OPENING, CLOSING = "([（《「『", ")]）》」』"


@dataclass(frozen=True)
class Entity:
    text: str
    label: str
    start: int
    end: int


@dataclass
class Sentence:
    """`text[start:end]` of the document, with its language and the entities inside it."""

    start: int
    end: int
    language: str
    entities: list[Entity] = field(default_factory=list)


@functools.cache
def english_pipeline():
    """spaCy with only what sentences and entities need: the statistical sentence recogniser
    replaces the slower dependency parser, and tagging/lemmas are not used at all.

    Its layers multiply matrices with numpy's BLAS instead of thinc's default, blis: on the dev
    documents the same sentences and entities came 1.6x as fast (18.0 -> 11.6 s, one thread).
    The layers keep the operations they were built with, hence the choice at load time."""
    import spacy
    from thinc.api import use_ops

    with use_ops("numpy", use_blis=False):
        nlp = spacy.load(
            settings.KB_SPACY_MODEL, exclude=["tagger", "attribute_ruler", "lemmatizer", "parser"]
        )
    nlp.enable_pipe("senter")
    # In en_core_web_sm only the tagger and the parser read the shared token vectors; the sentence
    # and entity recognisers embed tokens themselves. Computed for no one, the shared vectors took
    # 3.6 of the 9.4 s that the dev documents cost on one thread (same sentences and entities).
    if "tok2vec" in nlp.pipe_names and not nlp.get_pipe("tok2vec").listening_components:
        nlp.remove_pipe("tok2vec")
    return nlp


def blocks(text: str, start: int, end: int) -> list[tuple[int, int]]:
    """Paragraph-like blocks of `text[start:end]` (split at blank lines), as absolute spans."""
    spans, position = [], start
    for match in BLOCK_BREAK.finditer(text, start, end):
        spans.append((position, match.start()))
        position = match.end()
    spans.append((position, end))
    return [(a, b) for a, b in (_strip(text, a, b) for a, b in spans) if a < b]


def split_sentences(text: str, start: int = 0, end: int | None = None) -> list[Sentence]:
    """Sentences of `text[start:end]` in order; each block is split by the rules of its language."""
    end = len(text) if end is None else end
    sentences: list[Sentence] = []
    english: list[tuple[int, int]] = []
    for block_start, block_end in blocks(text, start, end):
        if detect_language(text[block_start:block_end]) == CHINESE:
            sentences += _chinese_sentences(text, block_start, block_end)
        else:
            english.append((block_start, block_end))
    if english:
        sentences += _english_sentences(text, english)
    sentences.sort(key=lambda sentence: sentence.start)
    return sentences


def _chinese_sentences(text: str, start: int, end: int) -> list[Sentence]:
    result = []
    for line_start, line_end in _lines(text, start, end):
        matches = CHINESE_SENTENCE.finditer(text, line_start, line_end)
        spans = [_strip(text, match.start(), match.end()) for match in matches]
        result += [Sentence(a, b, CHINESE) for a, b in _rejoin(text, spans)]
    return result


def _english_sentences(text: str, spans: list[tuple[int, int]]) -> list[Sentence]:
    result = []
    docs = english_pipeline().pipe(text[a:b] for a, b in spans)
    for (offset, _), doc in zip(spans, docs, strict=True):
        entities = [
            Entity(ent.text, ent.label_, offset + ent.start_char, offset + ent.end_char) for ent in doc.ents
        ]
        spans = [_strip(text, offset + sent.start_char, offset + sent.end_char) for sent in doc.sents]
        for a, b in _rejoin(text, spans):
            inside = [entity for entity in entities if a <= entity.start and entity.end <= b]
            result.append(Sentence(a, b, detect_language(text[a:b]) or "en", inside))
    return result


def _rejoin(text: str, spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """The non-empty spans as sentences, with the cuts made inside one put back: a part that leaves a
    bracket open which the next one closes, or that ends without a full stop before a bracket.
    Scientific papers cite as "four areas [6]: contaminated, ...", which spaCy cuts at "[" and again
    after it (on dev, 1 in 9 English sentences had a bracket left open); a Chinese title may hold a
    "!" (《停止!! 云雀》)."""
    joined: list[tuple[int, int]] = []
    for a, b in spans:
        if a >= b:
            continue
        if joined and _continues(text[joined[-1][0] : joined[-1][1]], text[a:b]):
            joined[-1] = (joined[-1][0], b)
        else:
            joined.append((a, b))
    return joined


def _continues(sentence: str, part: str) -> bool:
    if _depth(sentence) > 0 and _depth(part, lowest=True) < 0:
        return True
    return not SENTENCE_END.search(sentence) and bool(CONTINUATION.match(part))


def _depth(text: str, *, lowest: bool = False) -> int:
    """Brackets opened and not closed in `text`; or, `lowest`, the fewest along the way (below zero
    when it closes one opened before it)."""
    depth = least = 0
    for character in text:
        if character in OPENING:
            depth += 1
        elif character in CLOSING:
            depth -= 1
            least = min(least, depth)
    return least if lowest else depth


def _lines(text: str, start: int, end: int) -> list[tuple[int, int]]:
    spans, position = [], start
    while position < end:
        newline = text.find("\n", position, end)
        stop = end if newline == -1 else newline
        spans.append((position, stop))
        position = stop + 1
    return spans


def _strip(text: str, start: int, end: int) -> tuple[int, int]:
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return start, end
