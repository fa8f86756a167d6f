"""Entity, number and date consistency: details of a sentence that none of its sources states.

An entailment model can score a sentence as supported while one figure in it is wrong ("in 1987"
instead of "in 1978"); a wrong number or name is exactly what a finance or legal reader must not
get. So every number of the sentence, and every word of its named entities (spaCy, English), must
appear in the sources it cites or in the question itself.
"""

import re
import unicodedata

from kb.ingestion.language import CHINESE, detect_language
from kb.ingestion.sentences import english_pipeline

# 1,234.5 / 3.5 / 2026 / 10:30: thousands separators dropped, decimal points kept.
NUMBER = re.compile(r"\d+(?:[.,:]\d+)*")
WORD = re.compile(r"[^\W_]+")
# Entity types whose words must appear in a source; numeric types are covered by the number check.
NAMED_ENTITY_TYPES = frozenset(
    {"PERSON", "ORG", "GPE", "LOC", "NORP", "FAC", "PRODUCT", "EVENT", "WORK_OF_ART", "LAW", "DATE"}
)


def unsupported_details(sentence: str, evidence: str) -> list[str]:
    """What `sentence` states that `evidence` (its sources and the question) does not, as reasons
    for the reader ("number 1987 is in no cited source"); empty when everything is backed."""
    evidence = _fold(evidence)
    known_numbers = {_number(match) for match in NUMBER.findall(evidence)}
    known_words = set(WORD.findall(evidence))
    problems = [
        f"number {number} is in no cited source"
        for number in dict.fromkeys(NUMBER.findall(_fold(sentence)))
        if _number(number) not in known_numbers
    ]
    if detect_language(sentence) != CHINESE:
        for entity in english_pipeline()(sentence).ents:
            if entity.label_ not in NAMED_ENTITY_TYPES:
                continue
            missing = [word for word in WORD.findall(_fold(entity.text)) if word not in known_words]
            missing = [word for word in missing if not word.isdigit()]  # numbers are checked above
            if missing:
                problems.append(f"{entity.text!r} is in no cited source")
    return problems


def _fold(text: str) -> str:
    return unicodedata.normalize("NFKC", text).casefold()


def _number(text: str) -> str:
    """1,000 and 1000 are the same number; 3.50 and 3.5 too."""
    text = text.replace(",", "")
    if "." in text and ":" not in text:
        text = text.rstrip("0").rstrip(".")
    return text
