"""The engine service over real HTTP: a `python -m inference.serve` subprocess with SmolLM2 INT8.

The service (conftest `engine_url`) runs two sequences at a time with one more waiting, so three open
streams fill it. Every test leaves it idle again.
"""

import json
import threading
import time
from contextlib import ExitStack

import httpx
import pytest

from inference.generation import generate
from inference.sampling import SamplingParams

QUESTION = [{"role": "user", "content": "What is the capital of France? Tell me about it."}]
OTHER_QUESTION = [{"role": "user", "content": "Name three colours."}]
SYSTEM_QUESTION = [
    {"role": "system", "content": "You are a terse assistant for a knowledge base."},
    {"role": "user", "content": "What is a wiki?"},
]
# Few tokens keep the tests fast (about 25 tokens/s here) and still show that generation went on.
MAX_TOKENS = 12
# Long enough that a stream is still running when the test acts on it, never read to the end.
LONG_MAX_TOKENS = 400


def in_process(runner, tokenizer, messages, max_tokens=MAX_TOKENS):
    """The greedy completion `generate` gives in this process: text, token count, finish reason."""
    prompt_ids = tokenizer.encode(tokenizer.render(messages))
    chunks = list(
        generate(runner, tokenizer, prompt_ids, SamplingParams(temperature=0.0, max_tokens=max_tokens))
    )
    return "".join(chunk.text for chunk in chunks), len(chunks), chunks[-1].finish_reason


def post_chat(url, **fields):
    return httpx.post(f"{url}/v1/chat/completions", json=fields, timeout=60.0)


def greedy_answer(url, messages, max_tokens=MAX_TOKENS):
    response = post_chat(url, messages=messages, max_tokens=max_tokens, temperature=0)
    assert response.status_code == 200, response.text
    return response.json()


def sse_events(lines):
    """The JSON payloads of `data:` lines, up to `data: [DONE]` (which must come)."""
    events = []
    for line in lines:
        if line.startswith("data: "):
            if line == "data: [DONE]":
                return events
            events.append(json.loads(line[len("data: ") :]))
    raise AssertionError("the stream ended without data: [DONE]")


def first_text(lines):
    """The first generated text of an open stream (after the role-only event that opens it)."""
    for line in lines:
        if line.startswith("data: {"):
            if text := json.loads(line[len("data: ") :])["choices"][0]["delta"].get("content"):
                return text
    raise AssertionError("the stream ended before any text")


def health(url):
    return httpx.get(f"{url}/health", timeout=5.0).json()


def metric(url, name):
    """The value of an unlabelled (or fully labelled) sample in GET /metrics."""
    for line in httpx.get(f"{url}/metrics", timeout=5.0).text.splitlines():
        if line.startswith(f"{name} "):
            return float(line.split()[-1])
    raise AssertionError(f"{name} is not in /metrics")


def wait_until(condition, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.05)


def open_stream(stack, url, messages=QUESTION, headers=None):
    """An open streaming request that has been answered 200 and is generating (or queued)."""
    client = stack.enter_context(httpx.Client(timeout=60.0))
    response = stack.enter_context(
        client.stream(
            "POST",
            f"{url}/v1/chat/completions",
            json={"messages": messages, "max_tokens": LONG_MAX_TOKENS, "stream": True},
            headers=headers,
        )
    )
    assert response.status_code == 200
    return response


def assert_idle(url):
    wait_until(lambda: (status := health(url))["active_sequences"] == 0 and status["queue_depth"] == 0)


def test_completion_is_the_greedy_generation_of_the_same_prompt(engine_url, int8_runner, tokenizer):
    answer = greedy_answer(engine_url, QUESTION)
    text, tokens, finish_reason = in_process(int8_runner, tokenizer, QUESTION)
    assert answer["object"] == "chat.completion"
    assert answer["model"] == "smollm2-135m-instruct"
    assert answer["choices"][0]["message"] == {"role": "assistant", "content": text}
    assert answer["choices"][0]["finish_reason"] == finish_reason
    prompt_tokens = len(tokenizer.encode(tokenizer.render(QUESTION)))
    assert answer["usage"] == {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": tokens,
        "total_tokens": prompt_tokens + tokens,
    }


def test_streamed_deltas_join_to_the_same_completion(engine_url, int8_runner, tokenizer):
    request = {"messages": QUESTION, "max_tokens": MAX_TOKENS, "temperature": 0, "stream": True}
    with httpx.stream("POST", f"{engine_url}/v1/chat/completions", json=request, timeout=60.0) as response:
        assert response.status_code == 200
        assert response.headers["content-type"] == "text/event-stream"
        events = sse_events(response.iter_lines())
    text, _, finish_reason = in_process(int8_runner, tokenizer, QUESTION)
    assert all(event["object"] == "chat.completion.chunk" for event in events)
    assert events[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert "".join(event["choices"][0]["delta"].get("content", "") for event in events) == text
    assert len(events) > 3, "the text came in pieces"
    assert [event["choices"][0]["finish_reason"] for event in events][-1] == finish_reason


def test_two_concurrent_requests_both_complete_with_their_own_answers(engine_url, int8_runner, tokenizer):
    answers = {}

    def ask(name, messages):
        answers[name] = greedy_answer(engine_url, messages)["choices"][0]["message"]["content"]

    threads = [
        threading.Thread(target=ask, args=("question", QUESTION)),
        threading.Thread(target=ask, args=("other", OTHER_QUESTION)),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert answers == {
        "question": in_process(int8_runner, tokenizer, QUESTION)[0],
        "other": in_process(int8_runner, tokenizer, OTHER_QUESTION)[0],
    }


def test_concurrent_greedy_requests_are_decoded_together_and_answered_as_one_at_a_time(engine_url):
    """Three requests fill both rows and the queue; they join and leave the decode batch at different
    tokens. On INT8 a row's logits do not depend on the other rows here, so the texts match exactly."""
    # Its own system prompt: the prefix-cache test below counts the first use of SYSTEM_QUESTION's.
    system_question = [{"role": "system", "content": "Answer like a pirate."}, *OTHER_QUESTION]
    asks = {"question": (QUESTION, MAX_TOKENS), "other": (OTHER_QUESTION, 5), "system": (system_question, 9)}
    sequential = {
        name: greedy_answer(engine_url, messages, tokens)["choices"][0]["message"]["content"]
        for name, (messages, tokens) in asks.items()
    }
    passes = metric(engine_url, "kb_engine_decode_passes_total")
    decoded = metric(engine_url, "kb_engine_decoded_sequences_total")
    concurrent = {}

    def ask(name, messages, tokens):
        concurrent[name] = greedy_answer(engine_url, messages, tokens)["choices"][0]["message"]["content"]

    threads = [threading.Thread(target=ask, args=(name, *ask_)) for name, ask_ in asks.items()]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert concurrent == sequential
    # Fewer passes than decoded tokens: sequences shared passes.
    assert metric(engine_url, "kb_engine_decoded_sequences_total") - decoded > (
        metric(engine_url, "kb_engine_decode_passes_total") - passes
    )


def test_repeated_system_prompt_reuses_its_cache_and_gives_the_same_answer(
    engine_url, int8_runner, tokenizer
):
    hits = metric(engine_url, "kb_engine_prefix_cache_hits_total")
    first = greedy_answer(engine_url, SYSTEM_QUESTION)
    second = greedy_answer(engine_url, SYSTEM_QUESTION)
    assert metric(engine_url, "kb_engine_prefix_cache_hits_total") == hits + 1
    expected = in_process(int8_runner, tokenizer, SYSTEM_QUESTION)[0]
    assert first["choices"][0]["message"]["content"] == second["choices"][0]["message"]["content"] == expected


def test_full_engine_answers_429_with_retry_after_and_disconnects_free_every_place(engine_url):
    rejected = metric(engine_url, "kb_engine_requests_rejected_total")
    with ExitStack() as streams:
        for _ in range(3):  # two generating, one waiting
            open_stream(streams, engine_url)
        # One reading: between two, the scheduler may admit a waiting request into the batch.
        status = health(engine_url)
        assert status["active_sequences"] + status["queue_depth"] == 3
        response = post_chat(engine_url, messages=QUESTION, max_tokens=MAX_TOKENS)
        assert response.status_code == 429
        assert int(response.headers["retry-after"]) >= 1
        assert response.json()["error"]["code"] == "queue_full"
    assert_idle(engine_url)
    assert metric(engine_url, "kb_engine_requests_rejected_total") == rejected + 1


def test_request_whose_first_token_would_come_after_its_timeout_is_refused_at_once(engine_url):
    with ExitStack() as streams:
        open_stream(streams, engine_url)
        with ExitStack() as leaving:
            open_stream(leaving, engine_url)
            first_reply = open_stream(streams, engine_url).iter_lines()  # queued behind the full batch
        # One left the batch: the queued one gets its place and first token, the engine a measured wait.
        assert first_text(first_reply)
        refused = httpx.post(
            f"{engine_url}/v1/chat/completions",
            json={"messages": QUESTION, "max_tokens": MAX_TOKENS},
            headers={"x-first-token-timeout": "0.001"},
            timeout=60.0,
        )
        assert refused.status_code == 429
        assert refused.json()["error"]["code"] == "queue_wait_too_long"
        assert "the 0.001 s its client waits" in refused.json()["error"]["message"]
        assert int(refused.headers["retry-after"]) >= 1
        # One that waits as long as the streams take is queued behind them.
        open_stream(streams, engine_url, headers={"x-first-token-timeout": "600"})
        status = health(engine_url)
        assert status["active_sequences"] + status["queue_depth"] == 3
    assert_idle(engine_url)


@pytest.mark.parametrize("value", ["soon", "0", "-5", "nan"])
def test_first_token_timeout_that_is_not_a_positive_number_answers_400(engine_url, value):
    response = httpx.post(
        f"{engine_url}/v1/chat/completions",
        json={"messages": QUESTION, "max_tokens": MAX_TOKENS},
        headers={"x-first-token-timeout": value},
        timeout=60.0,
    )
    assert response.status_code == 400
    assert "X-First-Token-Timeout" in response.json()["error"]["message"]


def test_client_that_disconnects_mid_stream_frees_its_sequence(engine_url):
    with ExitStack() as stream:
        response = open_stream(stream, engine_url)
        lines = response.iter_lines()
        while not next(lines).startswith('data: {"id"'):
            pass
        assert next(line for line in lines if line.startswith("data: "))  # text is flowing
        assert health(engine_url)["active_sequences"] == 1
    assert_idle(engine_url)
    # Dropped, not run to its 400 tokens: the engine is free for the next request at once.
    assert greedy_answer(engine_url, QUESTION, max_tokens=2)["choices"][0]["finish_reason"] == "length"


@pytest.mark.parametrize(
    ("body", "complaint"),
    [
        (b"{not json", "not valid JSON"),
        (json.dumps({"messages": []}).encode(), "messages"),
        (json.dumps({"messages": [{"role": "wizard", "content": "hi"}]}).encode(), "role"),
        (json.dumps({"messages": QUESTION, "temperature": 5}).encode(), "temperature"),
        (json.dumps({"messages": QUESTION, "max_tokens": 0}).encode(), "max_tokens"),
        (json.dumps({"messages": QUESTION, "max_tokens": "ten"}).encode(), "max_tokens"),
        (json.dumps({"messages": QUESTION, "stop": [3]}).encode(), "stop"),
    ],
)
def test_invalid_request_answers_400_saying_what_is_wrong(engine_url, body, complaint):
    response = httpx.post(f"{engine_url}/v1/chat/completions", content=body, timeout=10.0)
    assert response.status_code == 400
    assert response.json()["error"]["type"] == "invalid_request_error"
    assert complaint in response.json()["error"]["message"]


def test_prompt_longer_than_the_context_answers_400_with_both_sizes(engine_url):
    messages = [{"role": "user", "content": "word " * 1000}]
    response = post_chat(engine_url, messages=messages, max_tokens=MAX_TOKENS)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "context_length_exceeded"
    assert "512 tokens of context" in error["message"]


def test_unknown_model_answers_404(engine_url):
    response = post_chat(engine_url, model="gpt-4", messages=QUESTION, max_tokens=MAX_TOKENS)
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "model_not_found"


def test_models_lists_the_served_model(engine_url):
    listing = httpx.get(f"{engine_url}/v1/models", timeout=5.0).json()
    assert [model["id"] for model in listing["data"]] == ["smollm2-135m-instruct"]


def test_health_names_the_model_version_and_queue(engine_url):
    status = health(engine_url)
    assert status["status"] == "ok"
    assert status["model"] == "smollm2-135m-instruct"
    assert status["precision"] == "int8"
    assert status["version"]
    assert status["execution_provider"] in ("CPUExecutionProvider", "CUDAExecutionProvider")
    assert {"queue_depth", "active_sequences", "max_batch"} <= status.keys()


def test_metrics_count_tokens_and_first_tokens_in_prometheus_format(engine_url):
    tokens = metric(engine_url, "kb_engine_generated_tokens_total")
    first_tokens = metric(engine_url, "kb_engine_time_to_first_token_seconds_count")
    answer = greedy_answer(engine_url, OTHER_QUESTION)
    assert (
        metric(engine_url, "kb_engine_generated_tokens_total")
        == tokens + answer["usage"]["completion_tokens"]
    )
    assert metric(engine_url, "kb_engine_time_to_first_token_seconds_count") == first_tokens + 1
    assert metric(engine_url, "kb_engine_tokens_per_second") > 0
    text = httpx.get(f"{engine_url}/metrics", timeout=5.0).text
    assert "# TYPE kb_engine_time_to_first_token_seconds histogram" in text
    assert "kb_engine_queue_depth 0" in text
    assert "kb_engine_active_sequences 0" in text
    assert 'kb_engine_model_info{model="smollm2-135m-instruct"' in text
