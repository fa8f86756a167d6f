"""Search tokens: the one tokenizer that BM25 indexing and BM25 queries share.

English (and other Latin-script) text becomes lowercase word tokens without spaCy's stop words;
numbers and codes stay whole ("iso-9001", "a4.2.1", "2026-03-01", "1000.50") and also yield
their parts, so "ISO 9001" finds "ISO-9001". Chinese is segmented by jieba in search mode
(words and their shorter sub-words). Mixed text is split into Han and non-Han runs first.
"""

import functools
import logging
import re
import unicodedata

HAN_RUN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]+")
# A word, or several joined by code punctuation: ISO-9001, A4.2.1, v2.0, user_id, 10:30.
WORD = re.compile(r"[^\W_]+(?:[-_./:][^\W_]+)*")
PART = re.compile(r"[^\W_]+")
THOUSANDS = re.compile(r"(?<=\d),(?=\d{3}\b)")
# Function words too frequent in Chinese text to tell passages apart.
CHINESE_STOP_WORDS = frozenset("的 了 是 在 和 与 及 或 等 也 就 都 而 被 把 这 那 之 其 于 以 为".split())


@functools.cache
def _english_stop_words() -> frozenset[str]:
    from spacy.lang.en.stop_words import STOP_WORDS

    return frozenset(STOP_WORDS)


@functools.cache
def _jieba():
    import jieba

    jieba.setLogLevel(logging.WARNING)
    jieba.initialize()
    return jieba


def query_language(text: str) -> str:
    """ "zh" when Han characters are at least a third of the letters, else "en"."""
    letters = sum(character.isalpha() for character in text)
    han = sum(len(run) for run in HAN_RUN.findall(text))
    return "zh" if letters and han * 3 >= letters else "en"


def search_tokens(text: str) -> list[str]:
    """The BM25 tokens of `text`, in order (repeats kept: they are term frequencies)."""
    text = THOUSANDS.sub("", unicodedata.normalize("NFKC", text))
    tokens: list[str] = []
    position = 0
    for han in HAN_RUN.finditer(text):
        tokens += _latin_tokens(text[position : han.start()])
        tokens += _chinese_tokens(han.group())
        position = han.end()
    tokens += _latin_tokens(text[position:])
    return tokens


def _latin_tokens(text: str) -> list[str]:
    stop_words = _english_stop_words()
    tokens = []
    for match in WORD.finditer(text.lower()):
        word = match.group()
        parts = PART.findall(word)
        if len(parts) > 1:
            tokens.append(word)
            tokens += [part for part in parts if part not in stop_words]
        elif word not in stop_words and (len(word) > 1 or word.isdigit()):
            tokens.append(word)
    return tokens


def _chinese_tokens(text: str) -> list[str]:
    return [word for word in _jieba().lcut_for_search(text) if word not in CHINESE_STOP_WORDS]
