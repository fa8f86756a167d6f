import pytest

from inference.generation import LENGTH, STOP, CompletionText, generate
from inference.sampling import SamplingParams

GREEDY = SamplingParams(temperature=0.0, max_tokens=40)


def completion(runner, tokenizer, prompt_ids, params, **options):
    chunks = list(generate(runner, tokenizer, prompt_ids, params, **options))
    return (
        "".join(chunk.text for chunk in chunks),
        [chunk.token_id for chunk in chunks],
        chunks[-1].finish_reason,
    )


def test_streamed_text_is_the_decoded_tokens(int8_runner, tokenizer, question_ids):
    text, token_ids, finish = completion(int8_runner, tokenizer, question_ids, GREEDY)
    assert text == tokenizer.decode(token_ids)
    assert text.startswith("The capital of France is Paris")


def test_max_tokens_ends_the_completion_with_finish_reason_length(int8_runner, tokenizer, question_ids):
    _, token_ids, finish = completion(
        int8_runner, tokenizer, question_ids, SamplingParams(temperature=0.0, max_tokens=5)
    )
    assert len(token_ids) == 5
    assert finish == LENGTH


def test_stop_sequence_ends_the_completion_and_is_not_part_of_it(int8_runner, tokenizer, question_ids):
    full, _, _ = completion(int8_runner, tokenizer, question_ids, GREEDY)
    stop = full[full.index("Paris") : full.index("Paris") + 7]
    text, _, finish = completion(
        int8_runner, tokenizer, question_ids, SamplingParams(temperature=0.0, max_tokens=40, stop=(stop,))
    )
    assert text == full[: full.index(stop)]
    assert finish == STOP


def test_text_that_may_begin_a_stop_sequence_is_held_back_until_it_does_not(tokenizer):
    stream = CompletionText(tokenizer, stop=("lovely day",))
    shown = []
    for token_id in tokenizer.encode("What a lovely garden, what a lovely day indeed"):
        delta, stopped = stream.add(token_id)
        shown.append(delta)
        assert "lovely day" not in "".join(shown)
        if stopped:
            break
    assert stopped
    assert "".join(shown) == "What a lovely garden, what a "


def test_end_of_sequence_token_finishes_with_stop(int8_runner, tokenizer):
    # Questions SmolLM2 answers in a short sentence. Which of them an INT8 build rambles on about
    # differs from build to build (a rebuild on 2 December 2026 kept going after "… is 4."), so
    # every one that ends must end with the EOS token, and at least one must end.
    stopped = 0
    for question in ("What is 2 + 2?", "Name one fruit.", "What colour is the sky?"):
        prompt_ids = tokenizer.encode(tokenizer.render([{"role": "user", "content": question}]))
        text, token_ids, finish = completion(
            int8_runner, tokenizer, prompt_ids, SamplingParams(temperature=0.0, max_tokens=100)
        )
        assert "<|im_end|>" not in text
        if finish == STOP:
            assert token_ids[-1] in tokenizer.eos_token_ids
            stopped += 1
        else:
            assert finish == LENGTH and len(token_ids) == 100
    assert stopped


def test_full_context_ends_the_completion_with_finish_reason_length(int8_runner, tokenizer):
    prompt_ids = [tokenizer.encode("hello")[0]] * (int8_runner.context_length - 3)
    _, token_ids, finish = completion(int8_runner, tokenizer, prompt_ids, GREEDY)
    assert len(token_ids) == 4
    assert finish == LENGTH


def test_sampling_with_a_seed_is_reproducible(int8_runner, tokenizer, question_ids):
    params = SamplingParams(temperature=0.9, top_p=0.9, max_tokens=20, seed=1234)
    first = completion(int8_runner, tokenizer, question_ids, params)
    second = completion(int8_runner, tokenizer, question_ids, params)
    assert first == second


def test_different_seeds_give_different_samples(int8_runner, tokenizer, question_ids):
    samples = {
        tuple(
            completion(
                int8_runner, tokenizer, question_ids, SamplingParams(temperature=1.0, max_tokens=8, seed=seed)
            )[1]
        )
        for seed in range(4)
    }
    assert len(samples) > 1


@pytest.mark.parametrize("temperature", [0.0, 1e-4])
def test_temperature_towards_zero_is_greedy(int8_runner, tokenizer, question_ids, temperature):
    greedy = completion(int8_runner, tokenizer, question_ids, GREEDY)
    cold = completion(
        int8_runner, tokenizer, question_ids, SamplingParams(temperature=temperature, max_tokens=40, seed=5)
    )
    assert cold == greedy


def test_prefix_cache_in_generate_gives_the_same_completion(int8_runner, tokenizer):
    system = [{"role": "system", "content": "You are a helpful assistant."}]
    prompt_ids = tokenizer.encode(tokenizer.render(system + [{"role": "user", "content": "Name a fruit."}]))
    prefix = int8_runner.prefix_cache(tokenizer.encode(tokenizer.render(system, add_generation_prompt=False)))
    assert completion(int8_runner, tokenizer, prompt_ids, GREEDY, prefix=prefix) == completion(
        int8_runner, tokenizer, prompt_ids, GREEDY
    )


def test_prefix_that_does_not_start_the_prompt_is_not_used(int8_runner, tokenizer, question_ids):
    other = [{"role": "system", "content": "You only speak about cheese."}]
    prefix = int8_runner.prefix_cache(tokenizer.encode(tokenizer.render(other, add_generation_prompt=False)))
    assert not prefix.is_prefix_of(question_ids)
    assert completion(int8_runner, tokenizer, question_ids, GREEDY, prefix=prefix) == completion(
        int8_runner, tokenizer, question_ids, GREEDY
    )
