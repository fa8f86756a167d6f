"""Admission and the generation loop: one thread owns the model runner and a decode batch of sequences.

Requests wait in a bounded queue; the loop admits them while the batch has room (at most `max_batch`
sequences). Each admitted request joins the batch with its prefill, run on its own row and started
from the cached KV cache of its system prompt when it has one, which gives its first token. Then one
decode pass appends a token to every sequence in the batch at once. So newcomers' prefills run
between decode passes, and sequences join and leave the batch at any pass. An idle engine may wait up
to `max_wait` seconds after a first request for others to start with it (a burst of requests then
decodes together from its first token on); 0, the default, starts at once.

A request may say how long its client waits for the first token (`first_token_timeout`). When the
batch is full, its wait is estimated from those of the requests before it (the seconds each waited
for its first token, per request that was to get one before it, itself included), and a request
that would get its first token only after its client has given up is refused at once
(QueueWaitTooLong): otherwise an overloaded engine spends its time on prefills whose answers nobody
collects. For the same reason a request whose prefill, by the time its turn comes, is expected to
end after its client's timeout is dropped unstarted (finish reason "expired").
"""

import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from inference.chat import ChatTokenizer
from inference.generation import Chunk, TokenStream
from inference.kv_cache import PrefixCache, PrefixCacheLRU
from inference.metrics import EngineMetrics
from inference.runner import ModelRunner, Sequence
from inference.sampling import SamplingParams

logger = logging.getLogger(__name__)

# System prompts whose KV cache is kept: the answering pipeline uses one or two fixed prompts; a few
# more cover experiments. Each costs its prompt length times 46 KB (SmolLM2) to 12 KB (Qwen 0.5B).
PREFIX_CACHE_SIZE = 8

# Weight of the latest measurement in the moving averages of waits and prefill times.
SMOOTHING = 0.2

# Finish reasons of requests that end without a last chunk, as counted in the metrics.
CANCELLED = "cancelled"
ERROR = "error"
EXPIRED = "expired"


class QueueFull(RuntimeError):
    """The queue already holds `max_queue` waiting requests; the client should retry later."""


class QueueWaitTooLong(QueueFull):
    """The request's first token is expected later than its `first_token_timeout`: refused at once,
    rather than started after its client has given up on it."""

    def __init__(self, expected_wait: float, timeout: float) -> None:
        super().__init__(
            f"the engine expects {expected_wait:.0f} s until this request's first token, longer than "
            f"the {timeout:g} s its client waits"
        )
        self.expected_wait = expected_wait
        self.timeout = timeout


@dataclass(eq=False)
class GenerationRequest:
    """One completion to generate, and where its chunks go.

    `on_event` is called from the scheduler thread with each Chunk (the last one has a finish reason),
    or once with an exception if generation fails; it must not block. `prefix_ids` are the token ids
    of the prompt's leading system turn, whose KV cache is worth keeping for later requests.
    """

    prompt_ids: list[int]
    params: SamplingParams
    on_event: Callable[[Chunk | Exception], None]
    prefix_ids: tuple[int, ...] | None = None
    # How many seconds its client waits for the first token (None: as long as it takes).
    first_token_timeout: float | None = None
    # Set by the scheduler on arrival: the requests that were to get their first token before it.
    queued_behind: int = 0
    arrived_at: float = field(default_factory=time.monotonic)
    # Set by `Scheduler.cancel` from another thread; the loop drops the sequence at its next step.
    cancelled: bool = False


class MovingAverage:
    """An exponentially weighted mean; None until the first value. Updated on the scheduler thread and
    read on others: `value` is one float assignment, so a reader sees either value whole."""

    def __init__(self) -> None:
        self.value: float | None = None

    def add(self, sample: float) -> None:
        self.value = sample if self.value is None else self.value + SMOOTHING * (sample - self.value)


@dataclass(eq=False)
class _Running:
    """A request in the batch: its sequence, its progress, and the token the next decode pass appends."""

    request: GenerationRequest
    sequence: Sequence
    stream: TokenStream
    next_token_id: int = 0


class Scheduler:
    """Owns the runner on one background thread; `submit` and `cancel` are safe from any thread."""

    def __init__(
        self,
        runner: ModelRunner,
        tokenizer: ChatTokenizer,
        metrics: EngineMetrics,
        *,
        max_batch: int,
        max_queue: int,
        max_wait: float = 0.0,
        prefix_cache_size: int = PREFIX_CACHE_SIZE,
    ) -> None:
        if max_batch < 1 or max_queue < 0 or max_wait < 0:
            raise ValueError(
                f"max_batch must be at least 1, max_queue and max_wait at least 0 "
                f"({max_batch}, {max_queue}, {max_wait})"
            )
        self.runner = runner
        self.tokenizer = tokenizer
        self.metrics = metrics
        self.max_batch = max_batch
        self.max_queue = max_queue
        self.max_wait = max_wait
        self._prefixes = PrefixCacheLRU(prefix_cache_size)
        self._batch = runner.new_batch(max_batch)
        self._waiting: deque[GenerationRequest] = deque()
        # Only the scheduler thread changes `_running` (`submit` reads its length).
        self._running: list[_Running] = []
        # Requests taken from the queue and not yet finished; with the queue, what `submit` bounds.
        self._in_batch = 0
        # A request's wait for its first token per request ahead of it, itself included (its own
        # prefill); and a prefill's seconds per prompt token fed.
        self._wait_per_place = MovingAverage()
        self._prefill_per_token = MovingAverage()
        self._wakeup = threading.Condition()
        self._stopping = False
        # Set by `drain`: the loop ends once the queue and the batch are empty.
        self._draining = False
        self._thread = threading.Thread(target=self._loop, name="scheduler", daemon=True)

    @property
    def queue_depth(self) -> int:
        return len(self._waiting)

    @property
    def active_sequences(self) -> int:
        """Requests out of the queue and not finished: in the batch, or admitted and awaiting prefill."""
        # Not len(_running): a request admitted with others waits outside it while their prefills run.
        return self._in_batch

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop after the current step; sequences still active are abandoned without a last chunk."""
        with self._wakeup:
            self._stopping = True
            self._wakeup.notify()
        self._thread.join(timeout)

    def drain(self) -> None:
        """Finish every request already submitted, then stop; blocks until then. Nothing new may be
        submitted meanwhile (the engine's pool sends new requests elsewhere first)."""
        with self._wakeup:
            self._draining = True
            self._wakeup.notify()
        self._thread.join()

    def submit(self, request: GenerationRequest) -> None:
        """Queue `request`; raises QueueFull when the batch is full and `max_queue` requests already wait,
        QueueWaitTooLong when its first token is not expected within its `first_token_timeout`."""
        with self._wakeup:
            held = self._in_batch + len(self._waiting)
            if held >= self.max_batch + self.max_queue:
                self.metrics.count_rejected()
                raise QueueFull(f"{len(self._waiting)} requests are already waiting")
            # Those waiting, and those admitted whose prefill has not run yet (or runs now).
            request.queued_behind = held - len(self._running)
            # With a place free it is admitted: its prefill is checked when its turn comes (_start).
            # So an idle engine always takes a request, and its wait corrects the average.
            if held >= self.max_batch:
                expected_wait = (request.queued_behind + 1) * (self._wait_per_place.value or 0.0)
                timeout = request.first_token_timeout
                if timeout is not None and expected_wait > timeout:
                    self.metrics.count_rejected()
                    raise QueueWaitTooLong(expected_wait, timeout)
            self._waiting.append(request)
            self._wakeup.notify()

    def cancel(self, request: GenerationRequest) -> None:
        """Stop generating for `request`: it leaves the queue now, or the batch at its next step."""
        with self._wakeup:
            request.cancelled = True
            if request in self._waiting:
                self._waiting.remove(request)
                self.metrics.count_finished(CANCELLED)
            self._wakeup.notify()

    def _loop(self) -> None:
        while True:
            with self._wakeup:
                while not self._stopping and not self._waiting and not self._running:
                    if self._draining and not self._in_batch:
                        return
                    self._wakeup.wait()
                self._gather_burst()
                if self._stopping:
                    return
                admitted = []
                while self._waiting and self._in_batch < self.max_batch:
                    admitted.append(self._waiting.popleft())
                    self._in_batch += 1
            # Prefills run outside the lock so that submit never waits on a forward pass.
            for request in admitted:
                self._start(request)
            for running in [running for running in self._running if running.request.cancelled]:
                self.metrics.count_finished(CANCELLED)
                self._leave(running)
            if self._running:
                self._decode()

    def _gather_burst(self) -> None:
        """With nothing running, wait (lock held by the caller) until the batch could be filled or
        the first waiting request has waited `max_wait`."""
        if self._running or not self.max_wait:
            return
        while not self._stopping and self._waiting and len(self._waiting) < self.max_batch:
            left = self._waiting[0].arrived_at + self.max_wait - time.monotonic()
            if left <= 0:
                return
            self._wakeup.wait(left)

    def _start(self, request: GenerationRequest) -> None:
        """Prefill `request` into a new row of the batch and deliver its first token."""
        if request.cancelled:  # after it left the queue, before it got here
            self.metrics.count_finished(CANCELLED)
            self._leave_batch()
            return
        if (expected_wait := self._expected_first_token(request)) > (request.first_token_timeout or math.inf):
            self.metrics.count_finished(EXPIRED)
            request.on_event(QueueWaitTooLong(expected_wait, request.first_token_timeout))
            self._leave_batch()
            return
        try:
            prefix = self._prefix_for(request)
            sequence = self._batch.add(prefix)
        except Exception as error:
            self._fail(request, error)
            self._leave_batch()
            return
        running = _Running(request, sequence, TokenStream(self.tokenizer, request.params))
        self._running.append(running)
        fed = request.prompt_ids[sequence.length :]
        started = time.monotonic()
        try:
            logits = self.runner.forward(sequence, fed)
        except Exception as error:
            self._fail(request, error)
            self._leave(running)
            return
        now = time.monotonic()
        self._prefill_per_token.add((now - started) / max(len(fed), 1))
        self._wait_per_place.add((now - request.arrived_at) / (request.queued_behind + 1))
        self.metrics.observe_first_token(now - request.arrived_at)
        self._advance(running, logits)

    def _expected_first_token(self, request: GenerationRequest) -> float:
        """Seconds from `request`'s arrival to its first token if its prefill starts now."""
        fed = len(request.prompt_ids) - len(request.prefix_ids or ())
        return time.monotonic() - request.arrived_at + fed * (self._prefill_per_token.value or 0.0)

    def _decode(self) -> None:
        """One decode pass over the whole batch, then each sequence's next chunk."""
        token_ids = [0] * len(self._running)
        for running in self._running:
            token_ids[running.sequence.row] = running.next_token_id
        try:
            logits = self.runner.decode(self._batch, token_ids)
        except Exception as error:
            # The pass failed for every row alike: no sequence in it can go on.
            for running in list(self._running):
                self._fail(running.request, error)
                self._leave(running)
            return
        self.metrics.observe_decode_pass(len(token_ids))
        # Rows move as sequences leave, so every row's logits are taken before any leaves.
        for running, row_logits in [(running, logits[running.sequence.row]) for running in self._running]:
            self._advance(running, row_logits)

    def _advance(self, running: _Running, logits: np.ndarray) -> None:
        """Pick `running`'s next token from `logits` and deliver it; it leaves the batch when finished."""
        sequence = running.sequence
        try:
            chunk = running.stream.next_chunk(
                logits, context_full=sequence.length == self.runner.context_length
            )
        except Exception as error:
            self._fail(running.request, error)
            self._leave(running)
            return
        self.metrics.count_token()
        running.request.on_event(chunk)
        if chunk.finish_reason is not None:
            self.metrics.count_finished(chunk.finish_reason)
            self._leave(running)
        else:
            running.next_token_id = chunk.token_id

    def _leave(self, running: _Running) -> None:
        self._running.remove(running)
        self._batch.remove(running.sequence)
        self._leave_batch()

    def _leave_batch(self) -> None:
        with self._wakeup:
            self._in_batch -= 1

    def _prefix_for(self, request: GenerationRequest) -> PrefixCache | None:
        """The KV cache of the request's system prompt, computed on its first use and kept in an LRU."""
        prefix_ids = request.prefix_ids
        # Tokens can merge across the end of the system turn; then its cache would not start the prompt.
        if prefix_ids is None or len(request.prompt_ids) <= len(prefix_ids):
            return None
        if tuple(request.prompt_ids[: len(prefix_ids)]) != prefix_ids:
            return None
        prefix = self._prefixes.get(prefix_ids)
        if prefix is not None:
            self.metrics.count_prefix_hit()
        else:
            prefix = self.runner.prefix_cache(list(prefix_ids))
            self._prefixes.put(prefix)
        return prefix

    def _fail(self, request: GenerationRequest, error: Exception) -> None:
        # A failing sequence must not take the loop, and every other sequence, down with it.
        logger.exception("generation failed", exc_info=error)
        self.metrics.count_finished(ERROR)
        request.on_event(error)
