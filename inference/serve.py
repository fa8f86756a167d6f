"""The engine's HTTP service: the OpenAI chat-completions API, health and Prometheus metrics.

    python -m inference.serve --model NAME [--model NAME...] [--precision int8] [--host 127.0.0.1]
                              [--port 8100] [--max-batch 8] [--max-queue 32] [--max-wait-ms 0]
                              [--context-length 4096]

Routes: POST /v1/chat/completions (`stream` false: one JSON answer; true: Server-Sent Events of
chunks, then `data: [DONE]`; `model` picks one of the models served, the first by default),
GET /v1/models, GET /health, GET /metrics, and POST /admin/models/activate (a bearer token, the
$KB_ENGINE_ADMIN_TOKEN the engine was started with), which swaps in another build of a model while
serving. A small plain ASGI app run by uvicorn. This module is the edge: it reads the OpenAI request
shape, and turns every error a client can cause into an OpenAI-style error JSON, here and nowhere
else. Builds are found in $KB_MODELS_DIR (default ~/.cache/kb/models).
"""

import argparse
import asyncio
import hmac
import json
import logging
import math
import os
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import uvicorn

from inference.catalog import PRECISIONS, generator_named
from inference.engine import Completion, Engine, GenerationFailed, InvalidRequest, PromptTooLong
from inference.metrics import EngineMetrics
from inference.model_store import InvalidBuild, build_path, models_dir
from inference.pool import EnginePool, ModelLoading, SwapInProgress, UnknownModel
from inference.runner import DEFAULT_CONTEXT_TOKENS
from inference.sampling import InvalidSamplingParams, SamplingParams
from inference.scheduler import QueueFull, QueueWaitTooLong

logger = logging.getLogger(__name__)

DEFAULT_PORT = 8100
# Sequences decoded together, one pass for all. On the 2-core dev CPU (SmolLM2 INT8) a pass of 8 gives
# about 2.5-3x the tokens/s of a pass of 1, while 16 rows cost ~2.7x the time of 8 (the INT8 matmul
# kernel leaves its fast path), so 8 is where total throughput peaks.
DEFAULT_MAX_BATCH = 8
# Requests waiting beyond the batch: a few answers' worth for every web worker; more would only make
# clients wait longer than they would before retrying elsewhere.
DEFAULT_MAX_QUEUE = 32
# What a client told the queue is full should wait: about one short answer's time on this CPU.
RETRY_AFTER_SECONDS = 1
# What a client asking for a model still loading should wait: loading takes seconds to a minute.
LOADING_RETRY_AFTER_SECONDS = 5
# The request header in which a client says how many seconds it waits for the first token (our web
# side sends its read timeout); other OpenAI-compatible servers ignore it.
FIRST_TOKEN_TIMEOUT_HEADER = b"x-first-token-timeout"
# Largest request body: the answer prompt is under 10 KB of text; a full 4,096-token context under 64 KB.
MAX_BODY_BYTES = 1024 * 1024

ROLES = ("system", "user", "assistant")

Send = Callable[[dict], Awaitable[None]]
Receive = Callable[[], Awaitable[dict]]


class HTTPError(Exception):
    """An error answer in the OpenAI shape: {"error": {"message", "type", "code"}}."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        error_type: str = "invalid_request_error",
        code: str | None = None,
        headers: tuple[tuple[str, str], ...] = (),
    ) -> None:
        super().__init__(message)
        self.status = status
        self.body = {"error": {"message": message, "type": error_type, "param": None, "code": code}}
        self.headers = headers


@dataclass(frozen=True)
class ChatRequest:
    """The parts of an OpenAI chat-completions request that this engine honours."""

    model: str | None
    messages: list[dict[str, str]]
    params: SamplingParams
    stream: bool
    include_usage: bool


def parse_chat_request(body: bytes) -> ChatRequest:
    """Read a chat-completions request body; raises HTTPError 400 saying what is wrong.

    Fields other APIs accept and this engine does not use (penalties, user, logprobs...) are ignored.
    """
    payload = _json_object(body)
    model = payload.get("model")
    if model is not None and not isinstance(model, str):
        raise HTTPError(400, "model must be a string")
    if payload.get("n", 1) != 1:
        raise HTTPError(400, "n must be 1: this engine returns one choice")
    stream = payload.get("stream", False)
    if not isinstance(stream, bool):
        raise HTTPError(400, "stream must be true or false")
    stream_options = payload.get("stream_options") or {}
    if not isinstance(stream_options, dict):
        raise HTTPError(400, "stream_options must be an object")
    stop = payload.get("stop")
    stop = [stop] if isinstance(stop, str) else stop or []
    if not isinstance(stop, list) or not all(isinstance(item, str) for item in stop):
        raise HTTPError(400, "stop must be a string or a list of strings")
    max_tokens = payload.get("max_completion_tokens", payload.get("max_tokens"))
    max_tokens = SamplingParams.max_tokens if max_tokens is None else _integer(max_tokens, "max_tokens")
    try:
        params = SamplingParams(
            temperature=_number(payload, "temperature", 1.0),
            top_p=_number(payload, "top_p", 1.0),
            max_tokens=max_tokens,
            stop=tuple(stop),
            seed=None if payload.get("seed") is None else _integer(payload["seed"], "seed"),
        )
    except InvalidSamplingParams as error:
        raise HTTPError(400, str(error)) from None
    return ChatRequest(
        model=model,
        messages=_messages(payload.get("messages")),
        params=params,
        stream=stream,
        include_usage=stream_options.get("include_usage") is True,
    )


@dataclass(frozen=True)
class ActivateRequest:
    """Which build to serve: a catalog model, its build version (None: the catalog's) and precision."""

    model: str
    version: str | None
    precision: str


def parse_activate_request(body: bytes) -> ActivateRequest:
    payload = _json_object(body)
    if not isinstance(payload.get("model"), str):
        raise HTTPError(400, 'the request body must be an object with a "model" string')
    version = payload.get("version")
    if version is not None and not isinstance(version, str):
        raise HTTPError(400, "version must be a string")
    precision = payload.get("precision", "int8")
    if precision not in PRECISIONS:
        raise HTTPError(400, f"precision must be one of {', '.join(PRECISIONS)}")
    return ActivateRequest(payload["model"], version, precision)


def _json_object(body: bytes) -> dict:
    try:
        payload = json.loads(body)
    except ValueError as error:
        raise HTTPError(400, f"the request body is not valid JSON: {error}") from None
    if not isinstance(payload, dict):
        raise HTTPError(400, "the request body must be a JSON object")
    return payload


def _messages(messages: object) -> list[dict[str, str]]:
    if not isinstance(messages, list) or not messages:
        raise HTTPError(400, "messages must be a non-empty list")
    parsed = []
    for index, message in enumerate(messages):
        if not isinstance(message, dict) or message.get("role") not in ROLES:
            raise HTTPError(
                400, f"messages[{index}] must be an object whose role is one of {', '.join(ROLES)}"
            )
        content = message.get("content")
        # The OpenAI shape also allows a list of typed parts; only text parts mean anything here.
        if isinstance(content, list) and all(
            isinstance(part, dict) and part.get("type") == "text" and isinstance(part.get("text"), str)
            for part in content
        ):
            content = "".join(part["text"] for part in content)
        if not isinstance(content, str):
            raise HTTPError(400, f"messages[{index}].content must be a string or a list of text parts")
        parsed.append({"role": message["role"], "content": content})
    return parsed


def _number(payload: dict, name: str, default: float) -> float:
    value = payload.get(name)
    if value is None:
        return default
    # bool is an int in Python, but `true` is no temperature.
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise HTTPError(400, f"{name} must be a number")
    return float(value)


def _integer(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise HTTPError(400, f"{name} must be an integer")
    return value


def build_dir(model: str, version: str | None, precision: str) -> Path:
    """Where the build of a catalog model lives; KeyError naming the known models for another name."""
    generator = generator_named(model)
    return build_path(models_dir(), generator.name, version or generator.version, precision)


class EngineApp:
    """The ASGI application serving a pool of engines; stops them with the server.

    `admin_token` guards /admin/ routes; without one they answer 403.
    """

    def __init__(self, pool: EnginePool, metrics: EngineMetrics, admin_token: str | None = None) -> None:
        self.pool = pool
        self.metrics = metrics
        self.admin_token = admin_token
        self.started = int(time.time())
        self._routes: dict[str, tuple[str, Callable[[dict, Receive, Send], Awaitable[None]]]] = {
            "/v1/chat/completions": ("POST", self._chat_completions),
            "/v1/models": ("GET", self._models),
            "/health": ("GET", self._health),
            "/metrics": ("GET", self._metrics),
            "/admin/models/activate": ("POST", self._activate),
        }

    async def __call__(self, scope: dict, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        try:
            route = self._routes.get(scope["path"])
            if route is None:
                raise HTTPError(404, f"no route {scope['path']}", code="not_found")
            method, handler = route
            if scope["method"] != method:
                raise HTTPError(405, f"{scope['path']} accepts {method} only", headers=(("allow", method),))
            await handler(scope, receive, send)
        except HTTPError as error:
            await _send_json(send, error.status, error.body, error.headers)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                self.pool.stop()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _chat_completions(self, scope: dict, receive: Receive, send: Send) -> None:
        timeout = _first_token_timeout(scope)
        request = parse_chat_request(await _read_body(receive))
        try:
            completion = self.pool.submit(request.model, request.messages, request.params, timeout)
        except UnknownModel as error:
            raise HTTPError(404, str(error), code="model_not_found") from None
        except ModelLoading as error:
            raise _retry_later(503, str(error), "model_loading", LOADING_RETRY_AFTER_SECONDS) from None
        except PromptTooLong as error:
            raise HTTPError(400, str(error), code="context_length_exceeded") from None
        except InvalidRequest as error:
            raise HTTPError(400, str(error)) from None
        except QueueWaitTooLong as error:
            raise _too_late(error) from None
        except QueueFull:
            raise _retry_later(429, "the engine is busy", "queue_full", RETRY_AFTER_SECONDS) from None
        watcher = asyncio.create_task(_cancel_on_disconnect(receive, completion))
        try:
            if request.stream:
                await self._stream(send, completion, include_usage=request.include_usage)
            else:
                await self._complete(send, completion)
        finally:
            watcher.cancel()

    async def _complete(self, send: Send, completion: Completion) -> None:
        text, finish_reason = [], None
        try:
            async for chunk in completion.chunks():
                text.append(chunk.text)
                finish_reason = chunk.finish_reason
        except GenerationFailed as error:
            raise _failure(error) from None
        if finish_reason is None:
            return  # cancelled: the client has gone, there is nobody to answer
        message = {"role": "assistant", "content": "".join(text)}
        await _send_json(
            send,
            200,
            {
                **_envelope(completion, "chat.completion"),
                "choices": [{"index": 0, "message": message, "finish_reason": finish_reason}],
                "usage": _usage(completion),
            },
        )

    async def _stream(self, send: Send, completion: Completion, *, include_usage: bool) -> None:
        headers = [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        envelope = _envelope(completion, "chat.completion.chunk")

        async def event(data: dict) -> None:
            body = f"data: {json.dumps(data)}\n\n".encode()
            await send({"type": "http.response.body", "body": body, "more_body": True})

        def choice(delta: dict, finish_reason: str | None = None) -> dict:
            return {**envelope, "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}]}

        await event(choice({"role": "assistant", "content": ""}))
        try:
            async for chunk in completion.chunks():
                if chunk.text:
                    await event(choice({"content": chunk.text}))
                if chunk.finish_reason is not None:
                    await event(choice({}, chunk.finish_reason))
        except GenerationFailed as error:
            # The status line has gone out already; an error event is the only way left to say it.
            await event(_failure(error).body)
        if include_usage:
            await event({**envelope, "choices": [], "usage": _usage(completion)})
        await send({"type": "http.response.body", "body": b"data: [DONE]\n\n", "more_body": False})

    async def _models(self, scope: dict, receive: Receive, send: Send) -> None:
        models = [
            {"id": engine.model_name, "object": "model", "created": self.started, "owned_by": "kb"}
            for engine in self.pool.engines()
        ]
        await _send_json(send, 200, {"object": "list", "data": models})

    async def _health(self, scope: dict, receive: Receive, send: Send) -> None:
        engines = self.pool.engines()
        default = engines[0]
        await _send_json(
            send,
            200,
            {
                "status": "ok",
                # The default model's build at the top level, as clients of a one-model engine read it.
                **default.describe(),
                "models": [_engine_health(engine) for engine in engines],
                "draining": [_engine_health(engine) for engine in self.pool.draining()],
                "queue_depth": sum(engine.scheduler.queue_depth for engine in engines),
                "active_sequences": sum(engine.scheduler.active_sequences for engine in engines),
                "max_batch": default.scheduler.max_batch,
                "max_queue": default.scheduler.max_queue,
            },
        )

    async def _metrics(self, scope: dict, receive: Receive, send: Send) -> None:
        engines = self.pool.engines() + self.pool.draining()
        text = self.metrics.render(
            queue_depth=sum(engine.scheduler.queue_depth for engine in engines),
            active_sequences=sum(engine.scheduler.active_sequences for engine in engines),
            max_batch=engines[0].scheduler.max_batch,
            models=[engine.describe() for engine in self.pool.engines()],
        )
        headers = [(b"content-type", b"text/plain; version=0.0.4; charset=utf-8")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": text.encode()})

    async def _activate(self, scope: dict, receive: Receive, send: Send) -> None:
        self._authorize(scope)
        request = parse_activate_request(await _read_body(receive))
        try:
            directory = build_dir(request.model, request.version, request.precision)
        except KeyError as error:
            raise HTTPError(404, error.args[0], code="model_not_found") from None
        try:
            # Loading takes seconds: off the event loop, which goes on serving the old build meanwhile.
            engine, replaced = await asyncio.to_thread(self.pool.activate, directory, request.model)
        except InvalidBuild as error:
            raise HTTPError(400, str(error), code="invalid_build") from None
        except SwapInProgress as error:
            raise HTTPError(409, str(error), code="swap_in_progress") from None
        activated = {"activated": engine.describe(), "replaced": replaced and replaced.describe()}
        await _send_json(send, 200, activated)

    def _authorize(self, scope: dict) -> None:
        if not self.admin_token:
            raise HTTPError(
                403,
                "the admin API is off: start the engine with KB_ENGINE_ADMIN_TOKEN set",
                error_type="permission_error",
            )
        headers = dict(scope["headers"])
        expected = f"Bearer {self.admin_token}".encode()
        if not hmac.compare_digest(headers.get(b"authorization", b""), expected):
            raise HTTPError(
                401,
                "a valid admin token is needed (Authorization: Bearer …)",
                error_type="authentication_error",
                headers=(("www-authenticate", "Bearer"),),
            )


def _first_token_timeout(scope: dict) -> float | None:
    """Seconds from the X-First-Token-Timeout header, None without one; 400 unless a positive number."""
    value = dict(scope["headers"]).get(FIRST_TOKEN_TIMEOUT_HEADER)
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        seconds = math.nan
    if not math.isfinite(seconds) or seconds <= 0:
        raise HTTPError(400, "the X-First-Token-Timeout header must be a positive number of seconds")
    return seconds


def _too_late(error: QueueWaitTooLong) -> HTTPError:
    # Ask again once the queue has had time to shrink to what the client waits.
    seconds = max(RETRY_AFTER_SECONDS, math.ceil(error.expected_wait - error.timeout))
    return _retry_later(429, str(error), "queue_wait_too_long", seconds)


def _failure(error: GenerationFailed) -> HTTPError:
    """What a completion that broke off answers: 429 when it expired in the queue, else 500 (as an
    error event when the stream had begun, its status line already sent)."""
    if isinstance(error.__cause__, QueueWaitTooLong):
        return _too_late(error.__cause__)
    return HTTPError(500, str(error), error_type="server_error")


def _retry_later(status: int, reason: str, code: str, seconds: int) -> HTTPError:
    """A 429 (this client should slow down) or 503 (the engine cannot serve yet) with Retry-After."""
    return HTTPError(
        status,
        f"{reason}; retry in {seconds} s",
        error_type="rate_limit_error" if status == 429 else "server_error",
        code=code,
        headers=(("retry-after", str(seconds)),),
    )


def _envelope(completion: Completion, kind: str) -> dict:
    build = completion.served_by
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex}",
        "object": kind,
        "created": int(time.time()),
        "model": build["model"],
        # OpenAI's field for the backend configuration behind an answer: here the build that made it.
        "system_fingerprint": f"{build['version']}-{build['precision']}",
    }


def _engine_health(engine: Engine) -> dict:
    return {
        **engine.describe(),
        "queue_depth": engine.scheduler.queue_depth,
        "active_sequences": engine.scheduler.active_sequences,
    }


async def _read_body(receive: Receive) -> bytes:
    body = bytearray()
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise HTTPError(400, "the client disconnected before sending the whole body")
        body += message.get("body", b"")
        if len(body) > MAX_BODY_BYTES:
            raise HTTPError(413, f"the request body is larger than {MAX_BODY_BYTES} bytes")
        if not message.get("more_body", False):
            return bytes(body)


async def _cancel_on_disconnect(receive: Receive, completion: Completion) -> None:
    """Cancel `completion` when the client goes away: its sequence must not keep a batch slot."""
    while (await receive())["type"] != "http.disconnect":
        pass
    completion.cancel()


async def _send_json(
    send: Send, status: int, payload: dict, headers: tuple[tuple[str, str], ...] = ()
) -> None:
    raw_headers = [(b"content-type", b"application/json")]
    raw_headers += [(name.encode(), value.encode()) for name, value in headers]
    await send({"type": "http.response.start", "status": status, "headers": raw_headers})
    await send({"type": "http.response.body", "body": json.dumps(payload).encode()})


def _usage(completion: Completion) -> dict:
    return {
        "prompt_tokens": completion.prompt_tokens,
        "completion_tokens": completion.completion_tokens,
        "total_tokens": completion.prompt_tokens + completion.completion_tokens,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m inference.serve", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--model",
        action="append",
        required=True,
        help="a generator from inference.catalog; repeat to serve several, the first by default",
    )
    parser.add_argument("--precision", choices=PRECISIONS, default="int8")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    parser.add_argument("--max-batch", type=int, default=DEFAULT_MAX_BATCH)
    parser.add_argument("--max-queue", type=int, default=DEFAULT_MAX_QUEUE)
    parser.add_argument(
        "--max-wait-ms",
        type=float,
        default=0,
        help="how long an idle engine waits after a request for others to batch with it",
    )
    parser.add_argument("--context-length", type=int, default=DEFAULT_CONTEXT_TOKENS)
    args = parser.parse_args(argv)
    if not 1 <= args.max_batch <= 128 or args.max_queue < 0 or args.max_wait_ms < 0:
        parser.error("--max-batch must be between 1 and 128, --max-queue and --max-wait-ms at least 0")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    metrics = EngineMetrics()

    def load(directory: Path) -> Engine:
        return Engine(
            directory,
            max_batch=args.max_batch,
            max_queue=args.max_queue,
            max_wait=args.max_wait_ms / 1000,
            context_length=args.context_length,
            metrics=metrics,
        )

    pool = EnginePool(load)
    for model in dict.fromkeys(args.model):
        try:
            pool.activate(build_dir(model, None, args.precision), model)
        except KeyError as error:
            parser.error(error.args[0])
        except InvalidBuild as error:
            pool.stop()
            sys.exit(f"cannot serve {model}: {error}")
    logger.info(
        "listening at http://%s:%d (max batch %d, max queue %d, max wait %g ms, context %d tokens)",
        args.host,
        args.port,
        args.max_batch,
        args.max_queue,
        args.max_wait_ms,
        args.context_length,
    )
    app = EngineApp(pool, metrics, admin_token=os.environ.get("KB_ENGINE_ADMIN_TOKEN") or None)
    # One process holds the models and their schedulers; without workers=1 uvicorn would take the web's
    # WEB_CONCURRENCY from the environment and refuse to start.
    uvicorn.run(app, host=args.host, port=args.port, log_level="info", workers=1)


if __name__ == "__main__":
    main()
