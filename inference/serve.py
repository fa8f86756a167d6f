"""The engine's HTTP service: the OpenAI chat-completions API, health and Prometheus metrics.

    python -m inference.serve --model NAME [--precision int8] [--host 127.0.0.1] [--port 8100]
                              [--max-batch 8] [--max-queue 32] [--max-wait-ms 0] [--context-length 4096]

Routes: POST /v1/chat/completions (`stream` false: one JSON answer; true: Server-Sent Events of
chunks, then `data: [DONE]`), GET /v1/models, GET /health, GET /metrics. A small plain ASGI app run
by uvicorn. This module is the edge: it reads the OpenAI request shape, and turns every error a
client can cause into an OpenAI-style error JSON, here and nowhere else. Builds are found in
$KB_MODELS_DIR (default ~/.cache/kb/models).
"""

import argparse
import asyncio
import json
import logging
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import uvicorn

from inference.catalog import PRECISIONS, generator_named
from inference.engine import Completion, Engine, GenerationFailed, InvalidRequest, PromptTooLong
from inference.model_store import InvalidBuild, build_path, models_dir
from inference.runner import DEFAULT_CONTEXT_TOKENS
from inference.sampling import InvalidSamplingParams, SamplingParams
from inference.scheduler import QueueFull

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
    try:
        payload = json.loads(body)
    except ValueError as error:
        raise HTTPError(400, f"the request body is not valid JSON: {error}") from None
    if not isinstance(payload, dict):
        raise HTTPError(400, "the request body must be a JSON object")
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


class EngineApp:
    """The ASGI application serving one Engine; starts and stops its scheduler with the server."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.started = int(time.time())
        self._routes: dict[str, tuple[str, Callable[[Receive, Send], Awaitable[None]]]] = {
            "/v1/chat/completions": ("POST", self._chat_completions),
            "/v1/models": ("GET", self._models),
            "/health": ("GET", self._health),
            "/metrics": ("GET", self._metrics),
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
            await handler(receive, send)
        except HTTPError as error:
            await _send_json(send, error.status, error.body, error.headers)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                self.engine.start()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                self.engine.stop()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _chat_completions(self, receive: Receive, send: Send) -> None:
        request = parse_chat_request(await _read_body(receive))
        if request.model is not None and request.model != self.engine.model_name:
            raise HTTPError(
                404,
                f"model {request.model!r} is not served here; this engine serves {self.engine.model_name!r}",
                code="model_not_found",
            )
        try:
            completion = self.engine.submit(request.messages, request.params)
        except PromptTooLong as error:
            raise HTTPError(400, str(error), code="context_length_exceeded") from None
        except InvalidRequest as error:
            raise HTTPError(400, str(error)) from None
        except QueueFull:
            raise HTTPError(
                429,
                f"the engine is busy; retry in {RETRY_AFTER_SECONDS} s",
                error_type="rate_limit_error",
                code="queue_full",
                headers=(("retry-after", str(RETRY_AFTER_SECONDS)),),
            ) from None
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
            raise HTTPError(500, str(error), error_type="server_error") from None
        if finish_reason is None:
            return  # cancelled: the client has gone, there is nobody to answer
        message = {"role": "assistant", "content": "".join(text)}
        await _send_json(
            send,
            200,
            {
                **self._envelope("chat.completion"),
                "choices": [{"index": 0, "message": message, "finish_reason": finish_reason}],
                "usage": _usage(completion),
            },
        )

    async def _stream(self, send: Send, completion: Completion, *, include_usage: bool) -> None:
        headers = [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        envelope = self._envelope("chat.completion.chunk")

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
            await event(HTTPError(500, str(error), error_type="server_error").body)
        if include_usage:
            await event({**envelope, "choices": [], "usage": _usage(completion)})
        await send({"type": "http.response.body", "body": b"data: [DONE]\n\n", "more_body": False})

    def _envelope(self, kind: str) -> dict:
        return {
            "id": f"chatcmpl-{uuid.uuid4().hex}",
            "object": kind,
            "created": int(time.time()),
            "model": self.engine.model_name,
        }

    async def _models(self, receive: Receive, send: Send) -> None:
        model = {"id": self.engine.model_name, "object": "model", "created": self.started, "owned_by": "kb"}
        await _send_json(send, 200, {"object": "list", "data": [model]})

    async def _health(self, receive: Receive, send: Send) -> None:
        scheduler = self.engine.scheduler
        await _send_json(
            send,
            200,
            {
                "status": "ok",
                **self.engine.describe(),
                "queue_depth": scheduler.queue_depth,
                "active_sequences": scheduler.active_sequences,
                "max_batch": scheduler.max_batch,
                "max_queue": scheduler.max_queue,
            },
        )

    async def _metrics(self, receive: Receive, send: Send) -> None:
        scheduler = self.engine.scheduler
        text = self.engine.metrics.render(
            queue_depth=scheduler.queue_depth,
            active_sequences=scheduler.active_sequences,
            max_batch=scheduler.max_batch,
            model=self.engine.describe(),
        )
        headers = [(b"content-type", b"text/plain; version=0.0.4; charset=utf-8")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": text.encode()})


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
    parser.add_argument("--model", required=True, help="a generator from inference.catalog")
    parser.add_argument("--precision", choices=PRECISIONS, default="int8")
    parser.add_argument("--version", help="a build version other than the catalog's current one")
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
    try:
        generator = generator_named(args.model)
    except KeyError as error:
        parser.error(error.args[0])
    build_dir = build_path(models_dir(), generator.name, args.version or generator.version, args.precision)
    try:
        engine = Engine(
            build_dir,
            max_batch=args.max_batch,
            max_queue=args.max_queue,
            max_wait=args.max_wait_ms / 1000,
            context_length=args.context_length,
        )
    except InvalidBuild as error:
        sys.exit(f"cannot serve {args.model}: {error}")
    logger.info(
        "serving %s at http://%s:%d (max batch %d, max queue %d, max wait %g ms, context %d tokens)",
        " ".join(engine.describe().values()),
        args.host,
        args.port,
        args.max_batch,
        args.max_queue,
        args.max_wait_ms,
        engine.runner.context_length,
    )
    # One process holds the model and its scheduler; without workers=1 uvicorn would take the web's
    # WEB_CONCURRENCY from the environment and refuse to start.
    uvicorn.run(EngineApp(engine), host=args.host, port=args.port, log_level="info", workers=1)


if __name__ == "__main__":
    main()
