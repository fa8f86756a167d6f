"""Labelled (premise, hypothesis) pairs: the commercially usable NLI rows and the fact-check dev claims.

A pair is labelled `supported` when the premise entails the hypothesis. The 3-way NLI labels collapse
to that: entailment → supported; neutral and contradiction → not supported, since a fact-checker
must flag a claim the passage does not state just as much as one it contradicts.
"""

import gzip
import json
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from inference.factcheck.sources import is_allowed

SHARED_DIR = Path(__file__).resolve().parents[3] / "shared"
NLI_DIR = SHARED_DIR / "nli"
NLI_TRAIN_FILES = ("train.jsonl.gz", "train_2way.jsonl.gz")
NLI_DEV_FILES = ("dev.jsonl", "dev_2way.jsonl")
FACTCHECK_DEV_FILE = SHARED_DIR / "eval" / "dev" / "factcheck.jsonl"

# How a fact-check record (a question and a candidate answer) becomes the hypothesis. Answers are often
# bare spans ("Hustle"), which only become a checkable statement together with their question.
HYPOTHESIS_FORMATS: dict[str, Callable[[str, str], str]] = {
    "claim": lambda question, claim: claim,
    "question + claim": lambda question, claim: f"{question} {claim}",
}


@dataclass(frozen=True)
class LabelledPair:
    premise: str
    hypothesis: str
    supported: bool
    source: str


def read_jsonl(path: Path) -> Iterator[dict]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as lines:
        for line in lines:
            yield json.loads(line)


def commercial_nli_pairs(nli_dir: Path, file_names: tuple[str, ...]) -> list[LabelledPair]:
    """The rows of `file_names` whose source is commercially usable, in file order."""
    return [
        LabelledPair(row["premise"], row["hypothesis"], row["label"] == "entailment", row["source"])
        for name in file_names
        for row in read_jsonl(nli_dir / name)
        if is_allowed(row["source"])
    ]


def balanced_sample(pairs: list[LabelledPair], *, size: int, seed: int) -> list[LabelledPair]:
    """`size` pairs, half supported and half not, drawn at random (reproducibly for a seed) and shuffled.

    Balancing keeps the model from learning the data's 40/60 prior, which would shift every score
    towards "not supported" whatever the passage says.
    """
    rng = random.Random(seed)
    supported = [pair for pair in pairs if pair.supported]
    unsupported = [pair for pair in pairs if not pair.supported]
    half = min(size // 2, len(supported), len(unsupported))
    chosen = rng.sample(supported, half) + rng.sample(unsupported, half)
    rng.shuffle(chosen)
    return chosen


def factcheck_pairs(path: Path, *, hypothesis_format: str) -> list[LabelledPair]:
    """The fact-check dev claims as pairs: premise = the knowledge context, hypothesis per the format."""
    to_hypothesis = HYPOTHESIS_FORMATS[hypothesis_format]
    return [
        LabelledPair(
            row["context"].strip(),
            to_hypothesis(row["question"], row["claim"]),
            row["label"] == "supported",
            row["source"],
        )
        for row in read_jsonl(path)
    ]
