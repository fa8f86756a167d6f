"""Screening text for sensitive terms in one pass whose work per character does not depend on how
many terms there are.

A TermMatcher is built once from the whole list over an Aho-Corasick automaton (pyahocorasick): the
scan takes one transition per byte of the text and reports only the terms that end there; no step
loops over the terms. Text and terms are compared *folded* (see fold()), and every folded character
remembers where it came from, so matches are reported, and masked, in the original text.

A term whose first or last character is a letter or digit of a script written with spaces matches
only at a word boundary on that side ("ass" is not found in "class", "SKU-1" not in "SKU-12"); edges
in Chinese or Japanese match anywhere, since those scripts put no spaces between words. Where
matches overlap the longest wins, and of equally long ones the first.
"""

import bisect
import enum
import functools
import re
import unicodedata
from array import array
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import ahocorasick

MASK_CHARACTER = "▇"


class Action(enum.StrEnum):
    """What a match does; the values are those of kb.models.SensitiveTerm.Action."""

    BLOCK = "block"
    MASK = "mask"
    FLAG = "flag"


# Of two terms that fold alike ("Foo" and "FOO"), the stricter action is kept.
_STRICTNESS = {Action.FLAG: 0, Action.MASK: 1, Action.BLOCK: 2}

# Characters that fold to themselves (lower-cased): printable ASCII, CJK ideographs, kana and CJK
# punctuation without compatibility forms. Runs of them, with single spaces, take the fast path.
_PLAIN_CHARACTERS = "\x21-\x7e\u3001-\u3003\u3005-\u3011\u3041-\u3096\u30a1-\u30fa\u3400-\u4dbf\u4e00-\u9fff"
# Invisible formatting (soft hyphen, zero-width spaces and joiners, direction marks, BOM): dropped,
# so "con\u200bfidential" is still "confidential".
_INVISIBLE = "\u00ad\u180e\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u206f\ufeff"
_PLAIN_RUN = re.compile(f"(?:[{_PLAIN_CHARACTERS}]| (?![\\s{_INVISIBLE}]))*")
_GAP = re.compile(f"[\\s{_INVISIBLE}]+")
_SPACE = re.compile(r"\s")
_LINE_BREAK = re.compile("[\n\r\x0b\x0c\x1c-\x1e\x85\u2028\u2029]")
# Scripts written without spaces between words: Thai, Lao, Myanmar, Khmer, CJK and kana.
_UNSPACED = re.compile(
    "[\u0e00-\u0eff\u1000-\u109f\u1780-\u17ff\u2e80-\u9fff\uf900-\ufaff\U00020000-\U0003ffff]"
)


@dataclass(frozen=True, slots=True)
class FoldedText:
    """`text` folded for matching; folded character i came from original[starts[i]:ends[i]]
    (`starts` and `ends` are None where folded character i is original character i)."""

    text: str
    starts: Sequence[int] | None = None
    ends: Sequence[int] | None = None

    def original_span(self, start: int, end: int) -> tuple[int, int]:
        """The span of the original text that folded text[start:end] (end > start) came from."""
        if self.starts is None:
            return start, end
        return self.starts[start], self.ends[end - 1]


@functools.lru_cache(maxsize=8192)
def _fold_cluster(cluster: str) -> str:
    return unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", cluster).casefold())


def fold(text: str, *, line_breaks: bool = False) -> FoldedText:
    """`text` as it is compared: NFKC-normalised (full-width "Ｆｏｏ" is "foo"), case-folded,
    invisible formatting characters dropped, every run of whitespace one space (or, with
    `line_breaks`, one "\\n" where the run holds a line break). Cost is linear in the length."""
    if _PLAIN_RUN.fullmatch(text):  # the common case: nothing changes length
        return FoldedText(text.lower())
    pieces: list[str] = []
    starts, ends = array("l"), array("l")
    position, length = 0, len(text)
    while position < length:
        end = _PLAIN_RUN.match(text, position).end()
        if position < end < length and unicodedata.combining(text[end]):
            end -= 1  # the run's last character composes with the marks that follow it
        if end > position:
            pieces.append(text[position:end].lower())
            starts.extend(range(position, end))
            ends.extend(range(position + 1, end + 1))
            position = end
            continue
        gap = _GAP.match(text, position)
        if gap:
            end = gap.end()
            folded = _fold_gap(gap.group(), line_breaks=line_breaks)
        else:
            end = position + 1
            while end < length and unicodedata.combining(text[end]):
                end += 1
            folded = _fold_cluster(text[position:end])
        pieces.append(folded)
        starts.extend([position] * len(folded))
        ends.extend([end] * len(folded))
        position = end
    return FoldedText("".join(pieces), starts, ends)


def _fold_gap(gap: str, *, line_breaks: bool) -> str:
    if not _SPACE.search(gap):
        return ""  # only invisible characters
    return "\n" if line_breaks and _LINE_BREAK.search(gap) else " "


def _is_word_character(character: str) -> bool:
    return character.isalnum() and not _UNSPACED.match(character)


def term_key(text: str) -> str:
    """The folded form a term is matched by; terms with the same key are the same term."""
    return fold(text).text.strip()


@dataclass(frozen=True, slots=True)
class Term:
    """A sensitive word or phrase. Raises ValueError for an empty term (nothing but whitespace or
    invisible characters) or an unknown action."""

    text: str
    category: str = ""
    action: Action = Action.FLAG

    def __post_init__(self):
        object.__setattr__(self, "action", Action(self.action))
        if not term_key(self.text):
            raise ValueError(f"a sensitive term cannot be empty (got {self.text!r})")


@dataclass(frozen=True, slots=True)
class Match:
    """Term `term` found at original_text[start:end]."""

    start: int
    end: int
    term: str
    category: str
    action: Action


@dataclass(frozen=True, slots=True)
class Screening:
    """The result of screening a text: `text` with MASK terms masked (same length as the original),
    and every match in order of position."""

    text: str
    matches: tuple[Match, ...]

    @property
    def blocked(self) -> bool:
        return any(match.action == Action.BLOCK for match in self.matches)

    @property
    def flagged(self) -> tuple[Match, ...]:
        return tuple(match for match in self.matches if match.action == Action.FLAG)

    @property
    def blocking(self) -> tuple[Match, ...]:
        return tuple(match for match in self.matches if match.action == Action.BLOCK)


class TermMatcher:
    """All the terms in one automaton; build once, then screen() any number of texts (thread-safe:
    screening never changes the matcher).

    The automaton runs over the UTF-8 bytes of the folded text (as Latin-1 characters), not over
    its characters: pyahocorasick finds a node's child by a linear search of its children, and with
    tens of thousands of Chinese terms the root alone would have some 20,000. Over bytes no node has
    more than 256 (measured: `manage.py bench terms`). UTF-8 never starts a character inside
    another, so every match lies on character boundaries. Lone surrogates (which broken JSON can
    carry) are encoded as they are, so they match nothing and break nothing.
    """

    def __init__(self, terms: Iterable[Term]):
        self._terms: list[Term] = []
        self._lengths = array("l")  # folded length of each term, in characters
        self._edges = bytearray()  # bit 1: needs a word boundary before it, bit 2: after it
        self._automaton = ahocorasick.Automaton(ahocorasick.STORE_INTS)
        for term in terms:
            self._add(term)
        if self._terms:
            self._automaton.make_automaton()

    def _add(self, term: Term) -> None:
        key = term_key(term.text)
        symbols = _as_bytes(key)
        known = self._automaton.get(symbols, -1)
        if known >= 0:
            if _STRICTNESS[term.action] > _STRICTNESS[self._terms[known].action]:
                self._terms[known] = term
            return
        self._automaton.add_word(symbols, len(self._terms))
        self._terms.append(term)
        self._lengths.append(len(key))
        self._edges.append(_is_word_character(key[0]) | _is_word_character(key[-1]) << 1)

    def __len__(self) -> int:
        """The number of distinct terms (after folding)."""
        return len(self._terms)

    def screen(self, text: str, *, applies: Callable[[str], bool] | None = None) -> Screening:
        """Every term in `text` (the longest where matches overlap), with MASK terms masked; only
        the terms whose category `applies` when given."""
        if not self._terms:
            return Screening(text, ())
        folded = fold(text)
        candidates = self._candidates(folded.text)
        if applies is not None:
            candidates = [found for found in candidates if applies(self._terms[found[2]].category)]
        matches = []
        for start, end, index in _longest_first(candidates):
            term = self._terms[index]
            matches.append(Match(*folded.original_span(start, end), term.text, term.category, term.action))
        return Screening(_masked(text, matches), tuple(matches))

    def _candidates(self, folded: str) -> list[tuple[int, int, int]]:
        """(start, end, term index) of every match in `folded` that sits on the boundaries its term needs."""
        encoded = folded.encode("utf-8", "surrogatepass")
        # Byte offsets become character offsets by subtracting the continuation bytes before them,
        # counted as the matches come (in order of their end).
        continuation = None if len(encoded) == len(folded) else encoded.translate(_CONTINUATION_BYTES)
        counted_to, counted = 0, 0
        found = []
        for final, index in self._automaton.iter(encoded.decode("latin-1")):
            end = final + 1
            if continuation is not None:
                counted += continuation.count(1, counted_to, end)
                counted_to = end
                end -= counted
            start = end - self._lengths[index]
            edges = self._edges[index]
            if edges & 1 and start > 0 and _is_word_character(folded[start - 1]):
                continue
            if edges & 2 and end < len(folded) and _is_word_character(folded[end]):
                continue
            found.append((start, end, index))
        return found


# 1 for a UTF-8 continuation byte (0b10xxxxxx), 0 for any other.
_CONTINUATION_BYTES = bytes(int(0x80 <= byte < 0xC0) for byte in range(256))


def _as_bytes(text: str) -> str:
    """The UTF-8 bytes of `text` as a string of Latin-1 characters, one per byte."""
    return text.encode("utf-8", "surrogatepass").decode("latin-1")


def _longest_first(candidates: list[tuple[int, int, int]]) -> list[tuple[int, int, int]]:
    """The candidates that survive when each overlap goes to the longest (then the first), by position."""
    kept: list[tuple[int, int, int]] = []
    kept_starts: list[int] = []
    for candidate in sorted(candidates, key=lambda c: (c[0] - c[1], c[0])):
        start, end, _ = candidate
        at = bisect.bisect_right(kept_starts, start)
        if (at > 0 and kept[at - 1][1] > start) or (at < len(kept) and kept[at][0] < end):
            continue
        kept.insert(at, candidate)
        kept_starts.insert(at, start)
    return kept


def _masked(text: str, matches: list[Match]) -> str:
    pieces, done = [], 0
    for match in matches:
        if match.action != Action.MASK:
            continue
        # Two matches may share an original character that folded into two ("ß" is "ss").
        start = max(match.start, done)
        pieces += [text[done:start], MASK_CHARACTER * (match.end - start)]
        done = max(match.end, done)
    pieces.append(text[done:])
    return "".join(pieces)
