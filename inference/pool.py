"""The builds one engine process serves, by model name, and the swap of one build for another.

A request names a model, or gets the default one (the first served). `activate` loads a build
beside the one serving its name, sends every later request to it, and frees the old build once the
requests it already holds have finished, so a swap under load fails none of them.
"""

import logging
import threading
from collections.abc import Callable
from pathlib import Path

from inference.engine import Completion, Engine
from inference.sampling import SamplingParams

logger = logging.getLogger(__name__)


class UnknownModel(LookupError):
    """No build of the named model is served or being loaded here."""


class ModelLoading(RuntimeError):
    """The named model's first build is still loading; it serves nothing yet."""


class SwapInProgress(RuntimeError):
    """Another build of the same model is being activated."""


class EnginePool:
    """The engines of one process; `submit` and `activate` are safe from any thread."""

    def __init__(self, load: Callable[[Path], Engine]) -> None:
        # `load` makes a (not yet started) Engine from a build directory, with the process's settings.
        self._load = load
        self._engines: dict[str, Engine] = {}
        self._default: str | None = None
        self._loading: set[str] = set()
        self._draining: list[Engine] = []
        self._lock = threading.Lock()

    @property
    def default_model(self) -> str | None:
        return self._default

    def engines(self) -> list[Engine]:
        """The engines serving requests, the default one first."""
        with self._lock:
            return sorted(self._engines.values(), key=lambda engine: engine.model_name != self._default)

    def draining(self) -> list[Engine]:
        """Replaced engines still finishing requests they held when they were swapped out."""
        with self._lock:
            return list(self._draining)

    def submit(
        self,
        model: str | None,
        messages: list[dict[str, str]],
        params: SamplingParams,
        first_token_timeout: float | None = None,
    ) -> Completion:
        """Queue a chat completion with the engine serving `model` (the default one when None).

        Raises UnknownModel and ModelLoading, besides what `Engine.submit` raises.
        """
        # Under the lock, so that a swap never lands between choosing an engine and queueing on it:
        # a drained engine must receive nothing after `drain` began.
        with self._lock:
            name = model or self._default
            engine = self._engines.get(name)
            if engine is None:
                if name in self._loading:
                    raise ModelLoading(f"model {name!r} is still loading")
                served = ", ".join(sorted(self._engines)) or "none"
                raise UnknownModel(f"model {model!r} is not served here; this engine serves {served}")
            return engine.submit(messages, params, first_token_timeout)

    def activate(self, build_dir: Path, model: str) -> tuple[Engine, Engine | None]:
        """Load the build in `build_dir` of `model` and serve it; returns it and the engine it replaced.

        Blocks while the build loads (seconds to a minute); meanwhile the old build goes on serving.
        The replaced engine drains on a thread of its own and is then freed. Raises SwapInProgress,
        and whatever loading raises (model_store.InvalidBuild for a broken build): then nothing changed.
        """
        with self._lock:
            if model in self._loading:
                raise SwapInProgress(f"a build of {model!r} is already being activated")
            self._loading.add(model)
        try:
            engine = self._load(build_dir)
            engine.start()
        finally:
            with self._lock:
                self._loading.discard(model)
        with self._lock:
            old = self._engines.get(model)
            self._engines[model] = engine
            self._default = self._default or model
            if old is not None:
                self._draining.append(old)
        if old is not None:
            threading.Thread(target=self._retire, args=(old,), name=f"drain {model}", daemon=True).start()
        logger.info("serving %s", " ".join(engine.describe().values()))
        return engine, old

    def stop(self) -> None:
        """Stop every engine now, abandoning what they hold (the server is shutting down)."""
        with self._lock:
            engines = [*self._engines.values(), *self._draining]
        for engine in engines:
            engine.stop()

    def _retire(self, engine: Engine) -> None:
        engine.drain()
        with self._lock:
            self._draining.remove(engine)
        # The last references to the engine go with this frame: its ONNX session and KV caches are freed.
        logger.info("freed %s", " ".join(engine.describe().values()))
