"""Batched decode: sequences of different lengths decoded in one pass, joining and leaving a running batch.

Each sequence in a batch must get what it would get decoded alone. On the FP32 build the logits agree
to float rounding (the rows of a pass are computed independently); the INT8 build also gives the same
greedy tokens here, which the HTTP test relies on.
"""

import threading
import time

import numpy as np
import pytest

from inference.generation import generate
from inference.metrics import EngineMetrics
from inference.runner import ContextLengthExceeded
from inference.sampling import SamplingParams
from inference.scheduler import GenerationRequest, QueueWaitTooLong, Scheduler

# Logits of a batched row against the same sequence alone, FP32: observed identical; the margin allows
# for a kernel that splits rows across threads differently.
LOGITS_TOLERANCE = 1e-4

QUESTIONS = (
    "What is the capital of France? Tell me about it.",
    "Name three colours.",
    "Write a haiku about the sea, then explain it in one long sentence.",
    "Why is the sky blue?",
)


@pytest.fixture(scope="module")
def prompts(tokenizer):
    """Chat prompts of different lengths, so that rows of a batch hold different numbers of tokens."""
    prompt_ids = [tokenizer.encode(tokenizer.render([{"role": "user", "content": q}])) for q in QUESTIONS]
    assert len({len(ids) for ids in prompt_ids}) == len(prompt_ids)
    return prompt_ids


def greedy_alone(runner, prompt_ids, steps):
    """Greedy tokens and the logits of each step, the sequence decoded on its own."""
    sequence = runner.new_sequence()
    logits = [runner.forward(sequence, prompt_ids)]
    tokens = [int(np.argmax(logits[-1]))]
    for _ in range(steps - 1):
        logits.append(runner.forward(sequence, [tokens[-1]]))
        tokens.append(int(np.argmax(logits[-1])))
    return tokens, logits


def collecting(events: list, finished: threading.Semaphore):
    """A request's `on_event`: appends each event to `events`, releases `finished` at the last one."""

    def on_event(event):
        events.append(event)
        if isinstance(event, Exception) or event.finish_reason is not None:
            finished.release()

    return on_event


class GreedyBatch:
    """Drives sequences through one SequenceBatch by hand: join (prefill), a decode pass, leave."""

    def __init__(self, runner, rows):
        self.runner = runner
        self.batch = runner.new_batch(rows)
        self.active = {}
        self.tokens = {}
        self.logits = {}

    def join(self, name, prompt_ids):
        sequence = self.batch.add()
        self.active[name] = sequence
        self.logits[name] = [self.runner.forward(sequence, prompt_ids)]
        self.tokens[name] = [int(np.argmax(self.logits[name][-1]))]

    def decode(self, passes=1):
        for _ in range(passes):
            token_ids = [0] * len(self.active)
            for name, sequence in self.active.items():
                token_ids[sequence.row] = self.tokens[name][-1]
            logits = self.runner.decode(self.batch, token_ids)
            for name, sequence in self.active.items():
                self.logits[name].append(logits[sequence.row])
                self.tokens[name].append(int(np.argmax(logits[sequence.row])))

    def leave(self, name):
        self.batch.remove(self.active.pop(name))


def assert_same_as_alone(runner, driver, prompts_by_name):
    for name, prompt_ids in prompts_by_name.items():
        tokens, logits = greedy_alone(runner, prompt_ids, len(driver.tokens[name]))
        assert driver.tokens[name] == tokens, name
        difference = max(np.abs(a - b).max() for a, b in zip(driver.logits[name], logits, strict=True))
        assert difference < LOGITS_TOLERANCE, name


def test_batched_decode_of_uneven_sequences_matches_decoding_each_alone(fp32_runner, prompts):
    driver = GreedyBatch(fp32_runner, rows=len(prompts))
    for index, prompt_ids in enumerate(prompts):
        driver.join(index, prompt_ids)
    driver.decode(passes=12)
    assert_same_as_alone(fp32_runner, driver, dict(enumerate(prompts)))


@pytest.mark.parametrize("runner_name", ["fp32_runner", "int8_runner"])
def test_sequences_joining_and_leaving_a_running_batch_keep_their_outputs(request, runner_name, prompts):
    runner = request.getfixturevalue(runner_name)
    driver = GreedyBatch(runner, rows=3)
    driver.join("a", prompts[0])
    driver.decode(passes=3)
    driver.join("b", prompts[1])
    driver.decode(passes=3)
    driver.join("c", prompts[2])
    driver.decode(passes=2)
    driver.leave("a")  # from the first row: the last sequence moves into it
    assert driver.active["c"].row == 0
    driver.decode(passes=3)
    driver.join("d", prompts[3])  # into a row that held another sequence's longer cache
    driver.decode(passes=2)
    driver.leave("d")  # the last row: nothing moves
    driver.decode(passes=2)
    if runner_name == "fp32_runner":
        assert_same_as_alone(runner, driver, dict(zip("abcd", prompts, strict=True)))
    else:
        for name, prompt_ids in zip("abcd", prompts, strict=True):
            assert driver.tokens[name] == greedy_alone(runner, prompt_ids, len(driver.tokens[name]))[0]


def test_a_sequence_joining_with_a_prefix_cache_decodes_as_if_computed(fp32_runner, tokenizer, prompts):
    system = [{"role": "system", "content": "You are a geography teacher. Answer in full sentences."}]
    prompt_ids = tokenizer.encode(tokenizer.render(system + [{"role": "user", "content": "Where is Lyon?"}]))
    prefix = fp32_runner.prefix_cache(tokenizer.encode(tokenizer.render(system, add_generation_prompt=False)))
    driver = GreedyBatch(fp32_runner, rows=2)
    driver.join("other", prompts[2])
    driver.decode(passes=2)
    sequence = driver.batch.add(prefix)
    driver.active["lyon"] = sequence
    driver.logits["lyon"] = [fp32_runner.forward(sequence, prompt_ids[sequence.length :])]
    driver.tokens["lyon"] = [int(np.argmax(driver.logits["lyon"][-1]))]
    driver.decode(passes=6)
    assert_same_as_alone(fp32_runner, driver, {"other": prompts[2], "lyon": prompt_ids})


def test_decode_with_a_full_sequence_is_refused_and_leaves_the_batch_unchanged(int8_runner, prompts):
    batch = int8_runner.new_batch(2)
    short, full = batch.add(), batch.add()
    int8_runner.forward(short, prompts[0])
    int8_runner.forward(full, [prompts[0][0]] * int8_runner.context_length)
    with pytest.raises(ContextLengthExceeded):
        int8_runner.decode(batch, [1, 1])
    assert (short.length, full.length) == (len(prompts[0]), int8_runner.context_length)


def test_scheduler_gives_concurrent_requests_the_completions_they_get_alone(fp32_runner, tokenizer, prompts):
    """More requests than rows, with different lengths, so they queue, join and leave at different passes."""
    params = [SamplingParams(temperature=0.0, max_tokens=tokens) for tokens in (6, 15, 9, 12)]
    params += [SamplingParams(temperature=0.7, max_tokens=10, seed=7)]
    requests = list(zip([*prompts, prompts[0]], params, strict=True))
    chunks = {index: [] for index in range(len(requests))}
    finished = threading.Semaphore(0)

    metrics = EngineMetrics()
    scheduler = Scheduler(fp32_runner, tokenizer, metrics, max_batch=3, max_queue=len(requests))
    scheduler.start()
    try:
        for index, (prompt_ids, request_params) in enumerate(requests):
            on_event = collecting(chunks[index], finished)
            scheduler.submit(GenerationRequest(prompt_ids, request_params, on_event))
        for _ in requests:
            assert finished.acquire(timeout=60)
    finally:
        scheduler.stop()
    for index, (prompt_ids, request_params) in enumerate(requests):
        assert chunks[index] == list(generate(fp32_runner, tokenizer, prompt_ids, request_params)), index
    rendered = metrics.render(queue_depth=0, active_sequences=0, max_batch=3, models=[]).splitlines()
    samples = dict(line.split() for line in rendered if not line.startswith("#") and "{" not in line)
    # Rows ran together: a mean decode batch above one (three most of the time, timing permitting).
    assert int(samples["kb_engine_decoded_sequences_total"]) > int(samples["kb_engine_decode_passes_total"])


def test_an_idle_scheduler_with_max_wait_starts_a_burst_together(int8_runner, tokenizer, prompts):
    """The first request's first token comes only after the second request arrived a second later
    (the engine waited to start them together); without max_wait the first starts alone at once."""

    def run(max_wait: float) -> tuple[float, float]:
        first_token_at, done = [], threading.Semaphore(0)

        def on_event(event):
            if not first_token_at:
                first_token_at.append(time.monotonic())
            if isinstance(event, Exception) or event.finish_reason is not None:
                done.release()

        def second_done(event):
            if isinstance(event, Exception) or event.finish_reason is not None:
                done.release()

        metrics = EngineMetrics()
        scheduler = Scheduler(int8_runner, tokenizer, metrics, max_batch=2, max_queue=2, max_wait=max_wait)
        scheduler.start()
        params = SamplingParams(temperature=0.0, max_tokens=8)
        try:
            scheduler.submit(GenerationRequest(prompts[0], params, on_event))
            time.sleep(1.0)
            second_at = time.monotonic()
            scheduler.submit(GenerationRequest(prompts[1], params, second_done))
            assert done.acquire(timeout=60) and done.acquire(timeout=60)
        finally:
            scheduler.stop()
        return first_token_at[0], second_at

    first_token, second_arrived = run(max_wait=5.0)
    # It waited, and started when the batch was full rather than when the 5 s were up.
    assert second_arrived < first_token < second_arrived + 3.5
    first_token, second_arrived = run(max_wait=0.0)
    assert first_token < second_arrived


def test_requests_whose_first_token_would_come_after_their_timeout_are_refused_or_dropped(
    int8_runner, tokenizer, prompts
):
    """One row: B queues behind A with a 0.05 s timeout (nothing measured yet, so it is let in), waits
    longer than that for A's 40 tokens (0.5 s was not enough on a fast machine), and is dropped
    unstarted when its turn comes. Then the engine knows its waits: C, queued behind D with a timeout
    shorter than any prefill, is refused at once. E waits out D's answer (up to 100 tokens), which
    lifts the average wait over F's timeout; F, alone on the idle engine, is still let in and
    answered: only a full batch makes a request wait."""
    events = {name: [] for name in "ABCDEF"}
    done = threading.Semaphore(0)

    def collector(name):
        return collecting(events[name], done)

    metrics = EngineMetrics()
    scheduler = Scheduler(int8_runner, tokenizer, metrics, max_batch=1, max_queue=2)
    scheduler.start()
    long = SamplingParams(temperature=0.0, max_tokens=40)
    longer = SamplingParams(temperature=0.0, max_tokens=100)
    short = SamplingParams(temperature=0.0, max_tokens=4)
    try:
        scheduler.submit(GenerationRequest(prompts[0], long, collector("A")))
        scheduler.submit(GenerationRequest(prompts[1], short, collector("B"), first_token_timeout=0.05))
        assert done.acquire(timeout=60) and done.acquire(timeout=60)
        scheduler.submit(GenerationRequest(prompts[0], longer, collector("D")))
        with pytest.raises(QueueWaitTooLong, match="the 0.001 s its client waits"):
            scheduler.submit(GenerationRequest(prompts[1], short, collector("C"), first_token_timeout=0.001))
        scheduler.submit(GenerationRequest(prompts[1], short, collector("E")))
        assert done.acquire(timeout=60) and done.acquire(timeout=60)
        # Less than a queued request is expected to wait, more than a short prefill takes.
        timeout = 0.9 * scheduler._wait_per_place.value
        scheduler.submit(GenerationRequest(prompts[1], short, collector("F"), first_token_timeout=timeout))
        assert done.acquire(timeout=60)
    finally:
        scheduler.stop()
    assert events["A"][-1].finish_reason == "length" and len(events["A"]) == 40
    [expired] = events["B"]
    assert isinstance(expired, QueueWaitTooLong) and expired.timeout == 0.05
    assert events["C"] == [] and events["D"][-1].finish_reason
    assert events["E"][-1].finish_reason and events["F"][-1].finish_reason
    rendered = metrics.render(queue_depth=0, active_sequences=0, max_batch=1, models=[])
    assert 'kb_engine_requests_finished_total{reason="expired"} 1' in rendered
    assert "kb_engine_requests_rejected_total 1" in rendered
