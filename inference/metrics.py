"""What the engine counts while it serves, and its rendering in the Prometheus text format for GET /metrics.

The scheduler thread records; HTTP handlers render. One lock keeps the two consistent.
"""

import threading
import time
from collections import deque

# Upper bounds (seconds) of the time-to-first-token histogram: from a cached short prompt on a GPU to
# a 1,000-token answer prompt queued behind others on this 2-core CPU (target: first token <= 4 s).
FIRST_TOKEN_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0)

# Tokens per second is measured over this trailing window: long enough to smooth the step-by-step
# jitter, short enough that the gauge drops to zero soon after the engine goes idle.
RATE_WINDOW_SECONDS = 10.0


class EngineMetrics:
    """Counters, a histogram and a rate for one engine process; safe to use from any thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._first_token_counts = [0] * len(FIRST_TOKEN_BUCKETS)
        self._first_token_sum = 0.0
        self._first_token_total = 0
        self._tokens_total = 0
        self._finished: dict[str, int] = {}
        self._rejected_total = 0
        self._prefix_hits_total = 0
        self._decode_passes_total = 0
        self._decoded_sequences_total = 0
        self._last_decode_batch = 0
        self._recent_tokens: deque[float] = deque()

    def observe_first_token(self, seconds: float) -> None:
        """Time from a request's arrival to its first token, queueing included (what the client waits)."""
        with self._lock:
            for index, bound in enumerate(FIRST_TOKEN_BUCKETS):
                if seconds <= bound:
                    self._first_token_counts[index] += 1
            self._first_token_sum += seconds
            self._first_token_total += 1

    def count_token(self) -> None:
        now = time.monotonic()
        with self._lock:
            self._tokens_total += 1
            self._recent_tokens.append(now)
            self._forget_before(now - RATE_WINDOW_SECONDS)

    def count_finished(self, reason: str) -> None:
        """A request that ended: a finish reason ("stop", "length"), or "cancelled", "error" or "expired"."""
        with self._lock:
            self._finished[reason] = self._finished.get(reason, 0) + 1

    def count_rejected(self) -> None:
        with self._lock:
            self._rejected_total += 1

    def count_prefix_hit(self) -> None:
        with self._lock:
            self._prefix_hits_total += 1

    def observe_decode_pass(self, batch_size: int) -> None:
        """One decode pass that appended a token to each of `batch_size` sequences."""
        with self._lock:
            self._decode_passes_total += 1
            self._decoded_sequences_total += batch_size
            self._last_decode_batch = batch_size

    def tokens_per_second(self) -> float:
        """Tokens generated per second over the last RATE_WINDOW_SECONDS, all sequences together."""
        now = time.monotonic()
        with self._lock:
            self._forget_before(now - RATE_WINDOW_SECONDS)
            return len(self._recent_tokens) / RATE_WINDOW_SECONDS

    def render(
        self, *, queue_depth: int, active_sequences: int, max_batch: int, models: list[dict[str, str]]
    ) -> str:
        """The Prometheus text exposition; each of `models` (name, version, precision...) labels a
        line of the info metric."""
        rate = self.tokens_per_second()
        with self._lock:
            lines = [
                "# HELP kb_engine_time_to_first_token_seconds Arrival of a request to its first token.",
                "# TYPE kb_engine_time_to_first_token_seconds histogram",
                *(
                    f'kb_engine_time_to_first_token_seconds_bucket{{le="{bound}"}} {count}'
                    for bound, count in zip(FIRST_TOKEN_BUCKETS, self._first_token_counts, strict=True)
                ),
                f'kb_engine_time_to_first_token_seconds_bucket{{le="+Inf"}} {self._first_token_total}',
                f"kb_engine_time_to_first_token_seconds_sum {self._first_token_sum:.6f}",
                f"kb_engine_time_to_first_token_seconds_count {self._first_token_total}",
                "# HELP kb_engine_generated_tokens_total Tokens generated, all requests together.",
                "# TYPE kb_engine_generated_tokens_total counter",
                f"kb_engine_generated_tokens_total {self._tokens_total}",
                f"# HELP kb_engine_tokens_per_second Tokens generated per second over the last "
                f"{RATE_WINDOW_SECONDS:g} s.",
                "# TYPE kb_engine_tokens_per_second gauge",
                f"kb_engine_tokens_per_second {rate:.3f}",
                "# HELP kb_engine_requests_finished_total Requests that ended, by finish reason.",
                "# TYPE kb_engine_requests_finished_total counter",
                *(
                    f'kb_engine_requests_finished_total{{reason="{reason}"}} {count}'
                    for reason, count in sorted(self._finished.items())
                ),
                "# HELP kb_engine_requests_rejected_total Requests turned away because the queue was full.",
                "# TYPE kb_engine_requests_rejected_total counter",
                f"kb_engine_requests_rejected_total {self._rejected_total}",
                "# HELP kb_engine_prefix_cache_hits_total Requests whose system prompt KV cache was reused.",
                "# TYPE kb_engine_prefix_cache_hits_total counter",
                f"kb_engine_prefix_cache_hits_total {self._prefix_hits_total}",
                "# HELP kb_engine_decode_batch_size Sequences in the latest decode pass (0 when idle).",
                "# TYPE kb_engine_decode_batch_size gauge",
                f"kb_engine_decode_batch_size {self._last_decode_batch if active_sequences else 0}",
                "# HELP kb_engine_decode_passes_total Decode passes, each appending a token to every "
                "sequence in the batch.",
                "# TYPE kb_engine_decode_passes_total counter",
                f"kb_engine_decode_passes_total {self._decode_passes_total}",
                "# HELP kb_engine_decoded_sequences_total Sequences summed over decode passes; divided by "
                "the passes, the mean decode batch size.",
                "# TYPE kb_engine_decoded_sequences_total counter",
                f"kb_engine_decoded_sequences_total {self._decoded_sequences_total}",
            ]
        lines += [
            "# HELP kb_engine_queue_depth Requests waiting for a place in the batch.",
            "# TYPE kb_engine_queue_depth gauge",
            f"kb_engine_queue_depth {queue_depth}",
            "# HELP kb_engine_active_sequences Sequences being generated, all decoded together.",
            "# TYPE kb_engine_active_sequences gauge",
            f"kb_engine_active_sequences {active_sequences}",
            "# HELP kb_engine_max_batch Most sequences generated at once.",
            "# TYPE kb_engine_max_batch gauge",
            f"kb_engine_max_batch {max_batch}",
            "# HELP kb_engine_model_info The model versions this engine serves, one line each.",
            "# TYPE kb_engine_model_info gauge",
            *(f"kb_engine_model_info{{{_labels(model)}}} 1" for model in models),
        ]
        return "\n".join(lines) + "\n"

    def _forget_before(self, cutoff: float) -> None:
        while self._recent_tokens and self._recent_tokens[0] < cutoff:
            self._recent_tokens.popleft()


def _labels(model: dict[str, str]) -> str:
    return ",".join(f'{key}="{_escape(value)}"' for key, value in model.items())


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
