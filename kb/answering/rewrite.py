"""Follow-up questions made standalone, so that search and the answer need no conversation.

"And for contractors?" after "How many days of leave carry over?" is searched and answered as "How
many days of leave carry over for contractors?". The engine writes the rewrite from the thread's
earlier questions, in the follow-up's language. Only the user's own words go into it, never an
earlier answer: an answer quotes documents, and the user may since have lost the right to read them.

Only a follow-up that reads as dependent on what came before (`depends_on_context`: "and…", "it",
one word) is rewritten: a 0.5B generator asked to rewrite a question that stands on its own merges
it with the previous one and changes what it asks. Its rewrite can also be empty, long-winded, in
another language, made of words the conversation never used or copied from the prompt's example;
`accept` turns those down and `by_rules` is used instead: the follow-up joined to the question it
follows.
"""

import functools
import re

from kb.answering.injection import find_injections
from kb.ingestion.language import CHINESE, HAN, detect_language
from retrieval.tokenizer import search_tokens

# A rewrite may use a few words of its own (a paraphrase, "policy" for "rule"), not mostly new ones.
MAX_NEW_WORD_SHARE = 0.34
# Characters of each earlier question in the prompt: enough for any question people type.
EARLIER_QUESTION_CHARS = 300

SYSTEM_PROMPTS = {
    "en": (
        "You rewrite the latest question of a conversation so that it can be understood without the "
        "earlier questions: replace words such as it, they or that, and add what the latest question "
        "leaves out, from the earlier questions. Keep its meaning and its language. Reply with the "
        "rewritten question only."
    ),
    CHINESE: (
        "你把对话中的最新问题改写成不看之前的问题也能理解的完整问题：把“它”“那个”等词换成所指的内容，"
        "并从之前的问题中补上省略的部分。保持原意和原来的语言。只回复改写后的问题。"
    ),
}
# One worked example: small generators follow a shown answer far better than a described one.
EXAMPLES = {
    "en": (
        ["Who approves travel expenses?"],
        "And above 5,000 euros?",
        "Who approves travel expenses above 5,000 euros?",
    ),
    CHINESE: (["谁审批差旅费用？"], "超过五千欧元呢？", "超过五千欧元的差旅费用由谁审批？"),
}
LABELS = {
    "en": ("Earlier questions:", "Latest question:", "Rewritten question:"),
    CHINESE: ("之前的问题：", "最新问题：", "改写后的问题："),
}

# Openings and words by which a follow-up leans on what came before it.
OPENERS = {
    "en": re.compile(
        r"^(?:(?:and )?(?:what|how) about|what if|same for|same with|and|or|but|also|so|then)\b[\s,]*",
        re.IGNORECASE,
    ),
    CHINESE: re.compile(r"^(?:那么|那|还有|另外|而且|并且|如果是|同样)[\s，,]*"),
}
PRONOUNS = {
    "en": re.compile(
        r"\b(?:it|its|they|them|their|theirs|this|that|these|those|he|she|him|his|her|hers"
        r"|another one|the (?:new|old|other|same|next|last|first|second) ones?)\b",
        re.IGNORECASE,
    ),
    # 其 ("its") and 他 / 她, but not 其他 ("other"), 其实 ("in fact") or 其次 ("next").
    CHINESE: re.compile(r"它|(?<!其)[他她]|这个|那个|这些|那些|这种|那种|其(?![他实次])|呢"),
}
# A question this short ("Contractors?", "承包商？") says what it asks only with the one before it.
SHORT_WORDS = 1
SHORT_HAN_CHARACTERS = 4
LEADING_LABEL = re.compile(
    r"^(?:(?:standalone|rewritten|new)?\s*question\s*[:：]|改写后的问题[:：]|问题[:：])\s*", re.IGNORECASE
)
QUOTES = "\"'“”‘’「」"


def rewrite_messages(follow_up: str, earlier: list[str], *, language: str) -> list[dict[str, str]]:
    """Chat messages asking the engine to make `follow_up` standalone, given the `earlier`
    questions of its thread (oldest first). The system message and the example never change, so
    the engine reuses their KV cache."""
    language = language if language in SYSTEM_PROMPTS else "en"
    example_earlier, example_follow_up, example_rewrite = EXAMPLES[language]
    return [
        {"role": "system", "content": SYSTEM_PROMPTS[language]},
        {"role": "user", "content": _ask(example_follow_up, example_earlier, language)},
        {"role": "assistant", "content": example_rewrite},
        {"role": "user", "content": _ask(follow_up, earlier, language)},
    ]


def _ask(follow_up: str, earlier: list[str], language: str) -> str:
    earlier_label, latest_label, rewrite_label = LABELS[language]
    listed = "\n".join(
        f"{number}. {question[:EARLIER_QUESTION_CHARS]}" for number, question in enumerate(earlier, 1)
    )
    return f"{earlier_label}\n{listed}\n{latest_label} {follow_up}\n{rewrite_label}"


def accept(candidate: str, follow_up: str, earlier: list[str]) -> str | None:
    """The engine's rewrite, cleaned (first line, no label or quotes), or None when it cannot be
    trusted: empty, longer than everything it was made from, in another language than the
    follow-up, dropping a word of the follow-up, mostly words the conversation never used, copying
    words of the example, adding a number, or carrying instructions."""
    lines = [line.strip() for line in candidate.strip().splitlines() if line.strip()]
    rewrite = LEADING_LABEL.sub("", lines[0]).strip().strip(QUOTES).strip() if lines else ""
    if not rewrite or len(rewrite) > len(follow_up) + sum(map(len, earlier)) + 40:
        return None
    language = detect_language(follow_up)
    if language and detect_language(rewrite) != language:
        return None
    words, asked = set(search_tokens(rewrite)), set(search_tokens(follow_up))
    known = asked.union(*(search_tokens(question) for question in earlier))
    new = words - known
    if not words or len(new) > MAX_NEW_WORD_SHARE * len(words):
        return None
    if new & _example_words() or any(character.isdigit() for word in new for character in word):
        return None  # copied from the example, or a number nobody asked about
    # What the user just asked is kept (particles such as 呢 and single letters may go).
    if any(len(word) > 1 and word not in words for word in asked):
        return None
    if find_injections(rewrite):
        return None
    return rewrite


@functools.cache
def _example_words() -> frozenset[str]:
    return frozenset(word for _, _, rewrite in EXAMPLES.values() for word in search_tokens(rewrite))


def by_rules(follow_up: str, earlier: list[str]) -> str:
    """The follow-up joined to the question before it ("And for contractors?" → "How many days of
    leave carry over, for contractors?")."""
    if not earlier:
        return follow_up
    language = CHINESE if detect_language(follow_up) == CHINESE else "en"
    rest = OPENERS[language].sub("", follow_up).strip() or follow_up
    previous = earlier[-1].rstrip("?？.。!！ ")
    return f"{previous}，{rest}" if language == CHINESE else f"{previous}, {rest}"


def depends_on_context(question: str) -> bool:
    """Whether the question opens like a follow-up ("and…", "what about…", "那…"), refers back
    ("it", "those", "呢") or is too short to name what it asks about."""
    if detect_language(question) == CHINESE:
        han = len(HAN.findall(question))
        language, short = CHINESE, han <= SHORT_HAN_CHARACTERS
    else:
        language, short = "en", len(search_tokens(question)) <= SHORT_WORDS
    return short or bool(OPENERS[language].search(question) or PRONOUNS[language].search(question))
