"""Reading the generator's answer: its sentences and the [n] markers it put on them.

Small generators place markers unreliably (shared/MODELS.md): after the full stop, on the wrong
source, or pointing at a source they were never given. So markers are only read here, as claims to
be verified: a marker naming no given source is dropped and counted; the fact-check decides which
sources each sentence really cites (factcheck.py).
"""

import re
from dataclasses import dataclass, field

from kb.ingestion.language import CHINESE
from kb.ingestion.sentences import split_sentences

# [1], [1, 2], [1][2], 【1】 (full-width brackets, as Chinese output often has).
MARKER = re.compile(r"\s*[\[【]\s*(\d{1,3}(?:\s*[,，、]\s*\d{1,3})*)\s*[\]】]")
NUMBER = re.compile(r"\d+")
# "According to Source 2, …" / "Based on the sources above, …" / "根据资料2，…": what small generators
# open sentences with. The phrase goes (the reader sees the citation instead); a source it names
# becomes a marker, verified like any other.
ATTRIBUTION = re.compile(
    r"(?:\b(?:according\s+to|based\s+on|as\s+(?:stated|mentioned|described|shown)\s+in)\s+"
    r"(?:the\s+)?(?:(?:information|text|data)\s+(?:provided\s+|given\s+)?in\s+)?(?:the\s+)?"
    r"(?:provided\s+|given\s+)?sources?(?:\s*(\d{1,3}))?(?:\s+(?:above|provided|given))?"
    r"|(?:根据|依据|按照)(?:以上|上述)?资料\s*(\d{1,3})?(?:中)?)\s*[,，:：]?\s*",
    re.IGNORECASE,
)


@dataclass
class DraftSentence:
    """A sentence of the generated answer (markers removed) and the sources its markers name."""

    text: str
    marked: list[int] = field(default_factory=list)


@dataclass(frozen=True)
class Draft:
    sentences: list[DraftSentence]
    invalid_markers: int


def read_answer(text: str, *, valid_numbers: set[int]) -> Draft:
    """The answer's sentences with their markers. A marker between two sentences (after a full stop)
    belongs to the sentence before it; markers naming numbers outside `valid_numbers` are dropped."""
    clean, markers = _strip_markers(_markers_for_attributions(text))
    spans = [(sentence.start, sentence.end) for sentence in split_sentences(clean)]
    sentences = [DraftSentence(clean[start:end]) for start, end in spans]
    invalid = 0
    for position, numbers in markers:
        owner = _sentence_at(spans, position)
        for number in numbers:
            if number not in valid_numbers:
                invalid += 1
            elif owner is not None and number not in sentences[owner].marked:
                sentences[owner].marked.append(number)
    return Draft([sentence for sentence in sentences if _has_words(sentence.text)], invalid)


def _markers_for_attributions(text: str) -> str:
    """Attribution phrases removed; one naming a source becomes its marker (at the sentence start,
    so that the sentence it opens owns it), and the sentence starts with a capital again."""

    def replace(match: re.Match) -> str:
        number = match.group(1) or match.group(2)
        return f"[{number}]" if number else ""

    def capitalise(match: re.Match) -> str:
        return match.group(1) + match.group(2).upper()

    text = ATTRIBUTION.sub(replace, text)
    return re.sub(r"((?:^|[.!?]\s+)(?:\[\d+\])?)([a-z])", capitalise, text)


def _strip_markers(text: str) -> tuple[str, list[tuple[int, list[int]]]]:
    """The text without markers, and each marker's position in that text with its numbers."""
    parts, markers, position, removed = [], [], 0, 0
    for match in MARKER.finditer(text):
        parts.append(text[position : match.start()])
        markers.append((match.start() - removed, [int(n) for n in NUMBER.findall(match.group(1))]))
        removed += match.end() - match.start()
        position = match.end()
    parts.append(text[position:])
    return "".join(parts), markers


def _sentence_at(spans: list[tuple[int, int]], position: int) -> int | None:
    """The sentence that ends at or before `position` last, else the first one."""
    owner = None
    for index, (start, _) in enumerate(spans):
        if start <= position:
            owner = index
    return owner if owner is not None else (0 if spans else None)


def _has_words(text: str) -> bool:
    return any(character.isalnum() for character in text)


def render(sentences: list[tuple[str, list[int]]], *, language: str) -> str:
    """Sentences joined into the answer shown, each followed by its citation markers."""
    separator = "" if language == CHINESE else " "
    return separator.join(text + "".join(f"[{number}]" for number in numbers) for text, numbers in sentences)
