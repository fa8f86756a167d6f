"""Query transformations: other forms of a question, searched beside it and fused with it.

- `abbreviations`: an abbreviation in the question ("What is PPE?") gets the long form the
  collection spells out ("personal protective equipment (PPE)"), found with Schwartz and Hearst's
  rule in the passages that contain the abbreviation;
- `decomposition`: each part of a compound question ("What is X and when was Y founded?");
- `keywords`: the question's search terms alone, without its question words;
- `paraphrase` (engine): the question reworded;
- `hypothetical` (engine; "HyDE"): a sentence that could answer the question, as a document would
  state it.

The question and each form are searched (hybrid) and fused by reciprocal rank, the question
weighing twice what a form does. Which transformations answering uses is KB_QUERY_TRANSFORMS: only
those `evaluate --transforms` shows to raise recall@5 or MRR@10 on dev without lowering the other
or the latency budget (README, Performance), which so far is none. An engine that fails or is slow
gives no form; the question is searched alone.
"""

import re
from collections import Counter

from django.conf import settings

from kb.ingestion.language import CHINESE, detect_language
from kb.selectors import current_chunks
from kb.services.pre_search_generation import pre_search_generation
from retrieval.bm25 import bm25_top_k
from retrieval.fusion import reciprocal_rank_fusion
from retrieval.search import Hit, search
from retrieval.tokenizer import search_tokens

TRANSFORMS = ("abbreviations", "decomposition", "keywords", "paraphrase", "hypothetical")
ENGINE_TRANSFORMS = ("paraphrase", "hypothetical")
QUESTION_WEIGHT, FORM_WEIGHT = 1.0, 0.5
# Passages read for an abbreviation's long form: it is spelt out where the abbreviation is introduced.
ABBREVIATION_PASSAGES = 30
ABBREVIATION = re.compile(r"\b[A-Z][A-Za-z0-9]*[A-Z][A-Za-z0-9]*\b")
MAX_ABBREVIATION_CHARS = 10
WORD = re.compile(r"[^\W_][\w'’-]*")
LINKING_WORDS = frozenset({"of", "and", "with", "for", "the", "in", "on", "to", "a", "an", "de"})
QUESTION_WORD = r"(?:what|when|where|who|whom|whose|which|why|how)"
COMPOUND = re.compile(rf"\s*,?\s+and\s+(?={QUESTION_WORD}\b)|[;；]\s*|，(?:以及|还有)", re.IGNORECASE)
ENGINE_PROMPTS = {
    "paraphrase": {
        "en": "Reword this question with other words, keeping its meaning. Reply with the question only.",
        CHINESE: "用其他词语改写这个问题，保持原意。只回复改写后的问题。",
    },
    "hypothetical": {
        "en": "Write one sentence that answers this question, as a reference document would state it.",
        CHINESE: "写一句回答这个问题的话，像参考文档中的表述那样。",
    },
}
ENGINE_MAX_TOKENS = 48


def transformed_search(query: str, *, scopes: list[int], k: int, transforms: list[str]) -> list[Hit]:
    """The k best passages for `query` and its forms under `transforms`, fused; with no form, the
    plain hybrid search."""
    forms = [form for transform in transforms for form in query_forms(query, transform, scopes=scopes)]
    return fused_search(query, forms, scopes=scopes, k=k)


def fused_search(query: str, forms: list[str], *, scopes: list[int], k: int) -> list[Hit]:
    """The question and its forms searched (hybrid) and fused by reciprocal rank. A passage keeps
    its BM25 and dense ranks from the first search that found it (the question's before the
    forms')."""
    if not forms:
        return search(query, scopes=scopes, k=k)
    depth = max(k, settings.RETRIEVAL_CANDIDATES)
    searches = [search(text, scopes=scopes, k=depth) for text in [query, *forms]]
    first: dict[int, Hit] = {}
    for hits in searches:
        for hit in hits:
            first.setdefault(hit.passage_id, hit)
    rankings = [[(hit.passage_id, hit.score) for hit in hits] for hits in searches]
    fused = reciprocal_rank_fusion(rankings, [QUESTION_WEIGHT] + [FORM_WEIGHT] * len(forms))
    return [
        Hit(passage_id, score, first[passage_id].bm25_rank, first[passage_id].dense_rank)
        for passage_id, score in fused[:k]
    ]


def query_forms(query: str, transform: str, *, scopes: list[int]) -> list[str]:
    """The forms `transform` gives the question (none when it does not apply)."""
    if transform == "abbreviations":
        return expanded_abbreviations(query, scopes)
    if transform == "decomposition":
        return decomposed(query)
    if transform == "keywords":
        return keywords(query)
    if transform in ENGINE_TRANSFORMS:
        return _engine_form(query, transform)
    raise ValueError(f"unknown query transformation {transform!r}; use one of {', '.join(TRANSFORMS)}")


def expanded_abbreviations(query: str, scopes: list[int]) -> list[str]:
    """The question with the long form of each abbreviation the collections spell out after it."""
    expansions = []
    for short in dict.fromkeys(ABBREVIATION.findall(query)):
        if len(short) <= MAX_ABBREVIATION_CHARS and (long := _long_form(short, scopes)):
            expansions.append(long)
    return [f"{query} {' '.join(expansions)}"] if expansions else []


def _long_form(short: str, scopes: list[int]) -> str | None:
    """The long form most often written before "(short)" in the passages that contain it."""
    passages = [passage_id for passage_id, _ in bm25_top_k(short, scopes=scopes, k=ABBREVIATION_PASSAGES)]
    texts = current_chunks().filter(pk__in=passages).values_list("text", flat=True)
    introduced = re.compile(rf"\(\s*{re.escape(short)}s?\s*[),;]")
    found = Counter()
    for text in texts:
        for match in introduced.finditer(text):
            words = WORD.findall(text[max(0, match.start() - 200) : match.start()])
            words = words[-min(len(short) + 5, 2 * len(short)) :]
            if (long := by_initials(short, words) or schwartz_hearst(short, " ".join(words))) is not None:
                found[long.casefold()] += 1
    return found.most_common(1)[0][0] if found else None


def by_initials(short: str, words: list[str]) -> str | None:
    """The last words whose initials spell `short` ("personal protective equipment" for PPE),
    small words such as "of" and "with" skipped, or None."""
    letters = [character.casefold() for character in short if character.isalnum()]
    for start in range(len(words) - 1, -1, -1):
        initials = [word[0].casefold() for word in words[start:] if word.casefold() not in LINKING_WORDS]
        if initials == letters and words[start].casefold() not in LINKING_WORDS:
            return " ".join(words[start:])
        if len(initials) > len(letters):
            return None
    return None


def schwartz_hearst(short: str, candidate: str) -> str | None:
    """The shortest end of `candidate` holding the letters of `short` in order, its first letter
    starting a word (Schwartz & Hearst, 2003), or None."""
    s, position = len(short) - 1, len(candidate) - 1
    while s >= 0:
        character = short[s].casefold()
        if not character.isalnum():
            s -= 1
            continue
        while position >= 0 and (
            candidate[position].casefold() != character
            or (s == 0 and position > 0 and candidate[position - 1].isalnum())
        ):
            position -= 1
        if position < 0:
            return None
        position -= 1
        s -= 1
    long = candidate[candidate.rfind(" ", 0, position + 1) + 1 :]
    return long if len(long.split()) > 1 else None


def decomposed(query: str) -> list[str]:
    """The parts of a compound question, each with two search terms or more."""
    parts = [part.strip(" ,，") for part in COMPOUND.split(query)]
    parts = [part for part in parts if len(search_tokens(part)) >= 2]
    return parts if len(parts) > 1 else []


def keywords(query: str) -> list[str]:
    if detect_language(query) == CHINESE:
        return []  # Chinese search terms are characters and pairs: no sentence to search
    terms = " ".join(search_tokens(query))
    return [terms] if terms and terms != query.casefold() else []


def _engine_form(query: str, transform: str) -> list[str]:
    language = CHINESE if detect_language(query) == CHINESE else "en"
    messages = [
        {"role": "system", "content": ENGINE_PROMPTS[transform][language]},
        {"role": "user", "content": query},
    ]
    reply = pre_search_generation(messages, max_tokens=ENGINE_MAX_TOKENS)
    if reply is None:
        return []
    lines = [line.strip() for line in reply.splitlines() if line.strip()]
    return [lines[0]] if lines and search_tokens(lines[0]) else []
