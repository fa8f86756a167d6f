"""The shipped INT8 entailment model scores whether a passage supports a claim."""

import pytest

from inference.factcheck.entailment import MODEL_DIR, EntailmentModel, read_manifest
from inference.model_store import sha256_of

PASSAGE = (
    "The Eiffel Tower is a wrought-iron lattice tower on the Champ de Mars in Paris, France. "
    "It is named after the engineer Gustave Eiffel, whose company designed and built the tower. "
    "It was completed in 1889 as the entrance arch to the World's Fair."
)
SUPPORTED_CLAIM = "The Eiffel Tower was completed in 1889."
CONTRADICTED_CLAIM = "The Eiffel Tower was completed in 1925."
UNRELATED_CLAIM = "Bananas are a good source of potassium."


@pytest.fixture(scope="module")
def model():
    return EntailmentModel.load(threads=1)


def test_claim_the_passage_states_scores_above_the_threshold(model):
    [probability] = model.support_probabilities([(PASSAGE, SUPPORTED_CLAIM)])
    assert probability >= model.threshold


@pytest.mark.parametrize("claim", [CONTRADICTED_CLAIM, UNRELATED_CLAIM])
def test_contradicted_or_unrelated_claim_scores_below_the_threshold(model, claim):
    [probability] = model.support_probabilities([(PASSAGE, claim)])
    assert probability < model.threshold


def test_batch_scores_equal_one_by_one_scores(model):
    pairs = [(PASSAGE, SUPPORTED_CLAIM), ("Short premise.", UNRELATED_CLAIM), (PASSAGE, CONTRADICTED_CLAIM)]
    one_by_one = [model.support_probabilities([pair])[0] for pair in pairs]
    # Equal on a CPU (one pair per call); on a GPU pairs share a call and its INT8 quantization scale.
    assert model.support_probabilities(pairs) == pytest.approx(one_by_one, abs=0.01)


def test_very_long_premise_is_cut_and_the_claim_kept(model):
    long_premise = PASSAGE + " The weather in Paris was mild that year." * 2000
    encoding = model.encoder.encode([(long_premise, SUPPORTED_CLAIM)])[0]
    claim_ids = model.encoder.tokenizer.encode(SUPPORTED_CLAIM, add_special_tokens=False).ids
    assert len(encoding) == model.encoder.max_length
    assert encoding.ids[-len(claim_ids) - 1 : -1] == claim_ids
    [probability] = model.support_probabilities([(long_premise, SUPPORTED_CLAIM)])
    assert probability >= model.threshold


def test_empty_input_gives_empty_output(model):
    assert model.support_probabilities([]) == []


def test_shipped_onnx_file_matches_its_manifest():
    onnx = read_manifest()["onnx"]
    path = MODEL_DIR / onnx["file"]
    assert path.stat().st_size == onnx["bytes"]
    assert sha256_of(path) == onnx["sha256"]
