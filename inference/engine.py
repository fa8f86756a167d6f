"""Chat requests in, streams of chunks out: the engine that the HTTP service talks to.

`Engine.submit` runs on the event loop of an HTTP handler: it renders and tokenizes the messages,
rejects prompts the model cannot hold, and queues the request with the scheduler. The scheduler's
thread hands each chunk back to that event loop, where the handler reads them from a `Completion`.
"""

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

from inference.chat import ChatTokenizer
from inference.generation import Chunk
from inference.metrics import EngineMetrics
from inference.runner import DEFAULT_CONTEXT_TOKENS, ModelRunner
from inference.sampling import SamplingParams
from inference.scheduler import GenerationRequest, Scheduler


class InvalidRequest(ValueError):
    """A request the engine cannot serve as sent; the message is meant for the client."""


class PromptTooLong(InvalidRequest):
    """The rendered prompt does not fit in the model's context."""


class GenerationFailed(RuntimeError):
    """Generation broke off inside the engine (not the client's fault); the engine itself keeps running."""


# Put in a completion's queue when it is cancelled, so that a handler still reading it stops.
_CANCELLED = object()


class Completion:
    """The chunks of one submitted request, read on the event loop that submitted it."""

    def __init__(
        self,
        scheduler: Scheduler,
        prompt_ids: list[int],
        prefix_ids: tuple[int, ...] | None,
        params: SamplingParams,
        served_by: dict[str, str],
        first_token_timeout: float | None = None,
    ) -> None:
        self._scheduler = scheduler
        # The build generating it (Engine.describe): which one answered, also across a model swap.
        self.served_by = served_by
        self._loop = asyncio.get_running_loop()
        self._events: asyncio.Queue = asyncio.Queue()
        self.prompt_tokens = len(prompt_ids)
        self.completion_tokens = 0
        self.request = GenerationRequest(prompt_ids, params, self._deliver, prefix_ids, first_token_timeout)

    async def chunks(self) -> AsyncIterator[Chunk]:
        """Each generated chunk; the last has a finish reason. Ends early, without one, when cancelled.

        Raises GenerationFailed when the engine could not finish the completion.
        """
        while True:
            event = await self._events.get()
            if event is _CANCELLED:
                return
            if isinstance(event, Exception):
                raise GenerationFailed(f"generation failed: {event}") from event
            self.completion_tokens += 1
            yield event
            if event.finish_reason is not None:
                return

    def cancel(self) -> None:
        """Stop generating (the client has gone): frees the request's queue place or batch slot."""
        self._scheduler.cancel(self.request)
        self._events.put_nowait(_CANCELLED)

    def _deliver(self, event: Chunk | Exception) -> None:
        # Called on the scheduler thread; asyncio queues may only be touched on their own loop.
        try:
            self._loop.call_soon_threadsafe(self._events.put_nowait, event)
        except RuntimeError:
            # The loop has closed (server shutting down): nobody reads this completion any more.
            self._scheduler.cancel(self.request)


class Engine:
    """One loaded build, its tokenizer and the scheduler that generates with it."""

    def __init__(
        self,
        build_dir: Path,
        *,
        max_batch: int,
        max_queue: int,
        max_wait: float = 0.0,
        context_length: int = DEFAULT_CONTEXT_TOKENS,
        metrics: EngineMetrics | None = None,
    ) -> None:
        self.runner = ModelRunner(build_dir, context_length=context_length)
        self.tokenizer = ChatTokenizer(build_dir)
        # Shared by the builds one process serves, so that its counters outlive a model swap.
        self.metrics = metrics or EngineMetrics()
        self.scheduler = Scheduler(
            self.runner,
            self.tokenizer,
            self.metrics,
            max_batch=max_batch,
            max_queue=max_queue,
            max_wait=max_wait,
        )

    @property
    def model_name(self) -> str:
        return self.runner.manifest["model"]

    def describe(self) -> dict[str, str]:
        """The model version served: name, version, precision and execution provider."""
        manifest = self.runner.manifest
        return {
            "model": manifest["model"],
            "version": manifest["version"],
            "precision": manifest["precision"],
            "execution_provider": self.runner.execution_provider,
        }

    def start(self) -> None:
        self.scheduler.start()

    def stop(self) -> None:
        self.scheduler.stop()

    def drain(self) -> None:
        """Finish the requests already submitted, then stop (blocks until they have finished)."""
        self.scheduler.drain()

    def submit(
        self, messages: list[dict[str, str]], params: SamplingParams, first_token_timeout: float | None = None
    ) -> Completion:
        """Queue a chat completion; call on the event loop that will read it.

        Raises InvalidRequest (PromptTooLong when the prompt does not fit in the context) and
        scheduler.QueueFull when the engine already holds all the requests it accepts, or would not
        start this one within `first_token_timeout` seconds.
        """
        if not messages:
            raise InvalidRequest("a chat completion needs at least one message")
        try:
            prompt_ids = self.tokenizer.encode(self.tokenizer.render(messages))
        except ValueError as error:
            raise InvalidRequest(str(error)) from error
        if len(prompt_ids) > self.runner.context_length:
            raise PromptTooLong(
                f"the messages make a prompt of {len(prompt_ids)} tokens, but {self.model_name} holds "
                f"{self.runner.context_length} tokens of context (prompt and completion together); "
                "shorten the messages"
            )
        prefix_ids = None
        if messages[0]["role"] == "system":
            system_turn = self.tokenizer.render(messages[:1], add_generation_prompt=False)
            prefix_ids = tuple(self.tokenizer.encode(system_turn))
        completion = Completion(
            self.scheduler, prompt_ids, prefix_ids, params, self.describe(), first_token_timeout
        )
        self.scheduler.submit(completion.request)
        return completion
