"""The runner's pre-allocated KV cache against the plainest possible reference.

The reference re-feeds the whole sequence every step with an empty cache. It is compared with the
FP32 build, where both paths compute the same sums and agree to ~1e-5 in the logits. The INT8 build
quantizes activations per call, so one new row (decode) and a full sequence (re-feeding) round
differently, by up to ~1 in the logits: its greedy tokens may legitimately part ways after a near
tie, and so INT8 is checked against itself (prefix reuse, chunked prefill) instead.
"""

import numpy as np
import pytest

from inference.runner import ContextLengthExceeded

STEPS = 20


def naive_greedy(runner, prompt_ids, steps):
    """Greedy decoding without any cache: every step runs the full sequence from scratch."""
    layout = runner.layout
    empty = np.zeros((1, layout.kv_heads, 0, layout.head_size), np.float32)
    token_ids, logits_seen = list(prompt_ids), []
    for _ in range(steps):
        feed = {
            "input_ids": np.array([token_ids], np.int64),
            "attention_mask": np.ones((1, len(token_ids)), np.int64),
        }
        for layer in range(layout.layers):
            feed[layout.past_key % layer] = empty
            feed[layout.past_value % layer] = empty
        logits = runner.session.run(["logits"], feed)[0][0, -1]
        logits_seen.append(logits)
        token_ids.append(int(np.argmax(logits)))
    return token_ids[len(prompt_ids) :], logits_seen


def cached_greedy(runner, prompt_ids, steps, prefix=None):
    sequence = runner.new_sequence(prefix)
    logits = runner.forward(sequence, prompt_ids[sequence.length :])
    token_ids, logits_seen = [], [logits]
    for _ in range(steps - 1):
        token_ids.append(int(np.argmax(logits)))
        logits = runner.forward(sequence, [token_ids[-1]])
        logits_seen.append(logits)
    token_ids.append(int(np.argmax(logits)))
    return token_ids, logits_seen


def test_decoding_with_the_preallocated_cache_matches_refeeding_the_whole_sequence(fp32_runner, question_ids):
    expected, expected_logits = naive_greedy(fp32_runner, question_ids, STEPS)
    actual, actual_logits = cached_greedy(fp32_runner, question_ids, STEPS)
    assert actual == expected
    assert max(np.abs(a - e).max() for a, e in zip(actual_logits, expected_logits, strict=True)) < 1e-3


@pytest.mark.parametrize("runner_name", ["int8_runner", "fp32_runner"])
def test_prefill_in_two_calls_matches_prefill_in_one(request, runner_name, question_ids):
    runner = request.getfixturevalue(runner_name)
    whole, _ = cached_greedy(runner, question_ids, STEPS)
    sequence = runner.new_sequence()
    runner.forward(sequence, question_ids[:9])
    logits = runner.forward(sequence, question_ids[9:])
    assert int(np.argmax(logits)) == whole[0]
    assert sequence.length == len(question_ids)


@pytest.mark.parametrize("runner_name", ["int8_runner", "fp32_runner"])
def test_system_prefix_cache_gives_the_same_tokens_as_computing_the_prefix(request, runner_name, tokenizer):
    runner = request.getfixturevalue(runner_name)
    system = [{"role": "system", "content": "You are a geography teacher. Answer in full sentences."}]
    prompt_ids = tokenizer.encode(tokenizer.render(system + [{"role": "user", "content": "Where is Lyon?"}]))
    prefix = runner.prefix_cache(tokenizer.encode(tokenizer.render(system, add_generation_prompt=False)))
    assert prefix.is_prefix_of(prompt_ids)
    without, _ = cached_greedy(runner, prompt_ids, STEPS)
    with_prefix, _ = cached_greedy(runner, prompt_ids, STEPS, prefix=prefix)
    assert with_prefix == without


def test_one_prefix_cache_serves_many_sequences_without_being_changed(int8_runner, tokenizer):
    system = [{"role": "system", "content": "Answer briefly."}]
    prefix = int8_runner.prefix_cache(tokenizer.encode(tokenizer.render(system, add_generation_prompt=False)))
    keys_before = [key.copy() for key in prefix.keys]
    for question in ("Where is Lyon?", "Where is Oslo?"):
        prompt_ids = tokenizer.encode(tokenizer.render(system + [{"role": "user", "content": question}]))
        cached_greedy(int8_runner, prompt_ids, 3, prefix=prefix)
    assert all(np.array_equal(before, after) for before, after in zip(keys_before, prefix.keys, strict=True))


def test_prompt_longer_than_the_context_is_refused_and_leaves_the_sequence_empty(int8_runner):
    sequence = int8_runner.new_sequence()
    with pytest.raises(
        ContextLengthExceeded, match=f"do not fit in the context of {int8_runner.context_length}"
    ):
        int8_runner.forward(sequence, [1] * (int8_runner.context_length + 1))
    assert sequence.length == 0
