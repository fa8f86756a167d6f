"""The entailment model learns only from commercially usable NLI sources, sampled reproducibly."""

import json

import pytest

from inference.factcheck.entailment import read_manifest
from inference.factcheck.pairs import balanced_sample, commercial_nli_pairs
from inference.factcheck.sources import ALLOWED_SOURCES, EXCLUDED_SOURCES


def excluded(source: str) -> bool:
    return source.startswith(tuple(EXCLUDED_SOURCES))


def test_no_allowed_source_is_an_excluded_one():
    assert not [source for source in ALLOWED_SOURCES if excluded(source)]


def test_shipped_model_names_only_allowed_sources():
    manifest = read_manifest()
    trained_on = {
        source
        for source, counts in manifest["training_data"]["sources"].items()
        if counts["supported"] + counts["not_supported"]
    }
    assert trained_on
    assert trained_on <= set(ALLOWED_SOURCES)
    assert set(manifest["excluded_sources"]) == set(EXCLUDED_SOURCES)


@pytest.fixture
def nli_dir(tmp_path):
    rows = [
        {
            "premise": "A cat sleeps.",
            "hypothesis": "An animal sleeps.",
            "label": "entailment",
            "source": "mnli_binary_dev",
        },
        {
            "premise": "A cat sleeps.",
            "hypothesis": "A dog barks.",
            "label": "neutral",
            "source": "conjnli_dev",
        },
        {
            "premise": "A cat sleeps.",
            "hypothesis": "The cat runs.",
            "label": "contradiction",
            "source": "wice_dev",
        },
        {
            "premise": "一只猫在睡觉。",
            "hypothesis": "动物在睡觉。",
            "label": "entailment",
            "source": "ocnli_dev",
        },
        {
            "premise": "A cat sleeps.",
            "hypothesis": "A cat rests.",
            "label": "entailment",
            "source": "anli_r1_dev",
        },
        {"premise": "猫在睡觉。", "hypothesis": "猫在跑。", "label": "contradiction", "source": "cmnli_dev"},
    ]
    (tmp_path / "rows.jsonl").write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))
    return tmp_path


def test_rows_from_excluded_sources_are_dropped(nli_dir):
    pairs = commercial_nli_pairs(nli_dir, ("rows.jsonl",))
    assert [pair.source for pair in pairs] == ["mnli_binary_dev", "conjnli_dev", "wice_dev"]


def test_neutral_and_contradiction_count_as_not_supported(nli_dir):
    pairs = commercial_nli_pairs(nli_dir, ("rows.jsonl",))
    assert [pair.supported for pair in pairs] == [True, False, False]


def test_sample_is_balanced_and_the_same_for_the_same_seed(nli_dir):
    pairs = commercial_nli_pairs(nli_dir, ("rows.jsonl",))
    sample = balanced_sample(pairs, size=2, seed=7)
    assert sorted(pair.supported for pair in sample) == [False, True]
    assert balanced_sample(pairs, size=2, seed=7) == sample
