"""Admission and the generation loop: one thread owns the model runner and advances every active sequence.

Requests wait in a bounded queue; the loop admits them while the batch has room (at most `max_batch`
sequences) and then gives every active sequence one step. A new sequence's first step is its prefill,
started from the cached KV cache of its system prompt when it has one; every later step decodes one
token. So prefills of newcomers run between the decode steps of the others.

This interleaves sequences round-robin; it does not yet batch them into one forward pass, because the
runner runs one sequence per call. Total tokens/s therefore stays that of one sequence, shared among
the active ones; true batched decode belongs in runner.py and changes nothing above `_step`.
"""

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from inference.chat import ChatTokenizer
from inference.generation import Chunk, generate
from inference.kv_cache import PrefixCache, PrefixCacheLRU
from inference.metrics import EngineMetrics
from inference.runner import ModelRunner
from inference.sampling import SamplingParams

logger = logging.getLogger(__name__)

# System prompts whose KV cache is kept: the answering pipeline uses one or two fixed prompts; a few
# more cover experiments. Each costs its prompt length times 46 KB (SmolLM2) to 12 KB (Qwen 0.5B).
PREFIX_CACHE_SIZE = 8

# Finish reasons of requests that end without a last chunk, as counted in the metrics.
CANCELLED = "cancelled"
ERROR = "error"


class QueueFull(RuntimeError):
    """The queue already holds `max_queue` waiting requests; the client should retry later."""


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
    arrived_at: float = field(default_factory=time.monotonic)
    # Set by `Scheduler.cancel` from another thread; the loop drops the sequence at its next step.
    cancelled: bool = False


@dataclass(eq=False)
class _Running:
    request: GenerationRequest
    chunks: Iterator[Chunk]
    first_token_seen: bool = False


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
        prefix_cache_size: int = PREFIX_CACHE_SIZE,
    ) -> None:
        if max_batch < 1 or max_queue < 0:
            raise ValueError(
                f"max_batch must be at least 1 and max_queue at least 0 ({max_batch}, {max_queue})"
            )
        self.runner = runner
        self.tokenizer = tokenizer
        self.metrics = metrics
        self.max_batch = max_batch
        self.max_queue = max_queue
        self._prefixes = PrefixCacheLRU(prefix_cache_size)
        self._waiting: deque[GenerationRequest] = deque()
        # Only the scheduler thread changes `_running`; other threads only read its length.
        self._running: list[_Running] = []
        # Requests taken from the queue and not yet finished; with the queue, what `submit` bounds.
        self._in_batch = 0
        self._wakeup = threading.Condition()
        self._stopping = False
        self._thread = threading.Thread(target=self._loop, name="scheduler", daemon=True)

    @property
    def queue_depth(self) -> int:
        return len(self._waiting)

    @property
    def active_sequences(self) -> int:
        return len(self._running)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop after the current step; sequences still active are abandoned without a last chunk."""
        with self._wakeup:
            self._stopping = True
            self._wakeup.notify()
        self._thread.join(timeout)

    def submit(self, request: GenerationRequest) -> None:
        """Queue `request`; raises QueueFull when the batch is full and `max_queue` requests already wait."""
        with self._wakeup:
            if self._in_batch + len(self._waiting) >= self.max_batch + self.max_queue:
                self.metrics.count_rejected()
                raise QueueFull(f"{len(self._waiting)} requests are already waiting")
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
                    self._wakeup.wait()
                if self._stopping:
                    return
                admitted = []
                while self._waiting and self._in_batch < self.max_batch:
                    admitted.append(self._waiting.popleft())
                    self._in_batch += 1
            # Prefix caches are computed outside the lock so that submit never waits on a forward pass.
            for request in admitted:
                running = self._start(request)
                if running is None:
                    self._leave_batch()
                else:
                    self._running.append(running)
            for running in list(self._running):
                if self._step(running):
                    self._running.remove(running)
                    self._leave_batch()

    def _leave_batch(self) -> None:
        with self._wakeup:
            self._in_batch -= 1

    def _start(self, request: GenerationRequest) -> _Running | None:
        try:
            chunks = generate(
                self.runner,
                self.tokenizer,
                request.prompt_ids,
                request.params,
                prefix=self._prefix_for(request),
            )
        except Exception as error:
            self._fail(request, error)
            return None
        return _Running(request, chunks)

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

    def _step(self, running: _Running) -> bool:
        """Advance one sequence by one step (prefill or one decoded token); True when it has finished."""
        request = running.request
        if request.cancelled:
            running.chunks.close()
            self.metrics.count_finished(CANCELLED)
            return True
        try:
            chunk = next(running.chunks)
        except Exception as error:
            self._fail(request, error)
            return True
        if not running.first_token_seen:
            running.first_token_seen = True
            self.metrics.observe_first_token(time.monotonic() - request.arrived_at)
        self.metrics.count_token()
        request.on_event(chunk)
        if chunk.finish_reason is not None:
            self.metrics.count_finished(chunk.finish_reason)
            return True
        return False

    def _fail(self, request: GenerationRequest, error: Exception) -> None:
        # A failing sequence must not take the loop, and every other sequence, down with it.
        logger.exception("generation failed", exc_info=error)
        self.metrics.count_finished(ERROR)
        request.on_event(error)
