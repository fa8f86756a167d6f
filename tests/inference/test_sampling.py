import numpy as np
import pytest

from inference.sampling import NUCLEUS_CANDIDATES, InvalidSamplingParams, Sampler, SamplingParams, nucleus


def test_nucleus_keeps_the_smallest_most_likely_set_reaching_top_p():
    probabilities = np.array([0.05, 0.5, 0.3, 0.15])
    assert nucleus(probabilities, 0.75).tolist() == [1, 2]
    assert nucleus(probabilities, 0.8).tolist() == [1, 2]
    assert nucleus(probabilities, 0.81).tolist() == [1, 2, 3]
    assert sorted(nucleus(probabilities, 1.0).tolist()) == [0, 1, 2, 3]


def test_nucleus_looks_past_the_first_candidates_when_they_hold_too_little():
    flat = np.full(4 * NUCLEUS_CANDIDATES, 1 / (4 * NUCLEUS_CANDIDATES))
    assert len(nucleus(flat, 0.5)) == 2 * NUCLEUS_CANDIDATES


def test_sampler_never_picks_outside_the_nucleus():
    logits = np.log(np.array([0.6, 0.3, 0.1]))
    sampler = Sampler(SamplingParams(temperature=1.0, top_p=0.6, seed=0))
    assert {sampler(logits) for _ in range(50)} == {0}


def test_seeded_samplers_agree():
    logits = np.random.default_rng(0).normal(size=1000)
    first, second = (Sampler(SamplingParams(seed=42)) for _ in range(2))
    assert [first(logits) for _ in range(20)] == [second(logits) for _ in range(20)]


@pytest.mark.parametrize(
    "params",
    [
        {"temperature": -0.1},
        {"temperature": 2.5},
        {"top_p": 0.0},
        {"top_p": 1.5},
        {"max_tokens": 0},
        {"stop": ("",)},
    ],
)
def test_impossible_parameters_are_refused_with_a_reason(params):
    with pytest.raises(InvalidSamplingParams, match=next(iter(params))):
        SamplingParams(**params)
