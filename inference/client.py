"""What the web side uses to talk to engines: any OpenAI-compatible chat-completions servers.

`chat` and `chat_stream` take one engine's URL or a list of replicas; with several, each request
goes to the replica this process has the fewest requests in flight on, and a retry goes to
another replica.
"""

import functools
import itertools
import json
import math
import threading
import time
from collections.abc import Iterator, Sequence

import httpx


class EngineUnavailable(RuntimeError):
    """The engine cannot be reached, stayed busy through every retry, or failed while answering."""


@functools.cache
def _tls_context():
    """One TLS context per process: httpx builds a new one for every client otherwise, loading the CA
    bundle each time (38 ms of CPU here, for every question asked)."""
    return httpx.create_ssl_context()


def engine_health(base_url: str, timeout: float = 2.0) -> dict:
    """Ask the engine whether it is up.

    Our own engine answers GET /health; other OpenAI-compatible servers (vLLM, llama.cpp,
    Ollama) all answer GET /v1/models, which is tried when /health does not exist.
    """
    base = base_url.rstrip("/")
    try:
        with httpx.Client(timeout=timeout, verify=_tls_context()) as client:
            response = client.get(f"{base}/health")
            if response.status_code == 404:
                response = client.get(f"{base}/v1/models")
            response.raise_for_status()
    except httpx.HTTPError as error:
        raise EngineUnavailable(f"engine at {base} is unreachable: {error}") from error
    try:
        return response.json()
    except ValueError:
        return {"status": "ok"}


# How long the build an engine serves is remembered: a swap shows in cache keys within this time.
BUILD_TTL_SECONDS = 10.0


class _ServedBuilds:
    """What `served_build` last learnt, per list of engines and model, for BUILD_TTL_SECONDS."""

    def __init__(self) -> None:
        self._known: dict[tuple[tuple[str, ...], str], tuple[float, str]] = {}
        self._lock = threading.Lock()

    def __call__(self, engines: str | Sequence[str], model: str) -> str:
        """The build of `model` the engines serve ("0.1.2-r1-int8"), or "" when they do not say
        (another kind of server, or none reachable)."""
        key = ((engines,) if isinstance(engines, str) else tuple(engines), model)
        now = time.monotonic()
        with self._lock:
            expires, build = self._known.get(key, (0.0, ""))
        if now < expires:
            return build
        build = _ask_build(key[0], model)
        with self._lock:
            self._known[key] = (now + BUILD_TTL_SECONDS, build)
        return build

    def clear(self) -> None:
        with self._lock:
            self._known.clear()


def _ask_build(urls: tuple[str, ...], model: str) -> str:
    for url in urls:
        try:
            status = engine_health(url)
        except EngineUnavailable:
            continue
        for served in status.get("models", []):
            if served.get("model") == model:
                return f"{served.get('version')}-{served.get('precision')}"
        return ""
    return ""


served_build = _ServedBuilds()


# How long a replica that could not be reached is passed over while another one is left.
DOWN_SECONDS = 5.0


class Replicas:
    """Engine replicas serving the same model, balanced by requests in flight (least-request
    balancing, ties taken in turn). Counts are this process's own: every web process balances
    its requests alone, which spreads the load well enough without any shared state."""

    def __init__(self, urls: Sequence[str]):
        if not urls:
            raise EngineUnavailable("no engine is configured")
        self.urls = [url.rstrip("/") for url in urls]
        self._in_flight = dict.fromkeys(self.urls, 0)
        self._down_until = dict.fromkeys(self.urls, 0.0)
        self._turn = itertools.count()
        self._lock = threading.Lock()

    def acquire(self, avoid: str | None = None) -> str:
        """The replica for the next request (other than `avoid` when there is a choice)."""
        with self._lock:
            start = next(self._turn) % len(self.urls)
            in_turn = self.urls[start:] + self.urls[:start]
            now = time.monotonic()
            candidates = [url for url in in_turn if url != avoid] or in_turn
            candidates = [url for url in candidates if self._down_until[url] <= now] or candidates
            url = min(candidates, key=self._in_flight.__getitem__)
            self._in_flight[url] += 1
            return url

    def release(self, url: str, *, reached: bool = True) -> None:
        with self._lock:
            self._in_flight[url] -= 1
            if not reached:
                self._down_until[url] = time.monotonic() + DOWN_SECONDS


@functools.cache
def _replicas(urls: tuple[str, ...]) -> Replicas:
    # One per list of URLs for the life of the process, so that counts span requests.
    return Replicas(urls)


def replicas(engines: str | Sequence[str]) -> Replicas:
    return _replicas((engines,) if isinstance(engines, str) else tuple(engines))


def activate_model(
    base_url: str,
    token: str,
    model: str,
    *,
    version: str | None = None,
    precision: str = "int8",
    timeout: float = 300.0,
) -> dict:
    """Have one of our engines swap in another build of `model` (POST /admin/models/activate); it
    answers once the build serves: {"activated": build, "replaced": build or None}."""
    url = f"{base_url.rstrip('/')}/admin/models/activate"
    body = {"model": model, "precision": precision} | ({"version": version} if version else {})
    try:
        response = httpx.post(url, json=body, headers={"authorization": f"Bearer {token}"}, timeout=timeout)
    except httpx.HTTPError as error:
        raise EngineUnavailable(f"engine at {url} is unreachable: {error}") from error
    _raise_for_error(url, response)
    return response.json()


class EngineRequestRejected(RuntimeError):
    """The engine refused the request itself (4xx other than 429): retrying the same request cannot help."""


# Statuses that mean "busy now, try again": 429 (queue full) and 503 (overloaded or starting).
RETRYABLE_STATUSES = frozenset({429, 503})
# Waits between tries: after a connection error, RETRY_BACKOFF_SECONDS doubling each time; after
# 429/503, the server's Retry-After, unless it is longer than a web request should stall for.
RETRY_BACKOFF_SECONDS = 0.5
MAX_RETRY_WAIT_SECONDS = 10.0


def chat(
    engines: str | Sequence[str],
    messages: list[dict[str, str]],
    *,
    model: str | None = None,
    max_tokens: int = 256,
    temperature: float = 0.0,
    stream: bool = False,
    timeout: float = 60.0,
    retries: int = 2,
) -> str:
    """The assistant's answer to `messages` from an OpenAI-compatible chat-completions server.

    `model` may be left out for our own engine (it serves one); vLLM, llama.cpp and Ollama need it.
    Retries up to `retries` times on connection errors and 429/503, honouring Retry-After. Raises
    EngineUnavailable when the server cannot be reached or stays busy, EngineRequestRejected on 4xx.
    """
    if stream:
        return "".join(
            chat_stream(
                engines,
                messages,
                model=model,
                max_tokens=max_tokens,
                temperature=temperature,
                timeout=timeout,
                retries=retries,
            )
        )
    payload = _chat_payload(messages, model, max_tokens, temperature, stream=False)
    pool, avoid = replicas(engines), None
    with _chat_client(timeout) as client:
        for attempt in range(retries + 1):
            base = avoid = pool.acquire(avoid)
            url, reached = f"{base}/v1/chat/completions", False
            try:
                response = client.post(url, json=payload)
                reached = True
            except httpx.TransportError as error:
                _wait_or_give_up(attempt, retries, f"engine at {url} is unreachable: {error}", None)
                continue
            finally:
                pool.release(base, reached=reached)
            if response.status_code in RETRYABLE_STATUSES:
                _wait_or_give_up(attempt, retries, _busy(url, response), response, replicas=len(pool.urls))
                continue
            _raise_for_error(url, response)
            return response.json()["choices"][0]["message"]["content"] or ""
    raise AssertionError("unreachable: the last attempt returns or raises")


def chat_stream(
    engines: str | Sequence[str],
    messages: list[dict[str, str]],
    *,
    model: str | None = None,
    max_tokens: int = 256,
    temperature: float = 0.0,
    timeout: float = 60.0,
    retries: int = 2,
) -> Iterator[str]:
    """Like `chat`, but yields the answer's text as it is generated (Server-Sent Events).

    Retries happen only before the first text arrives; a stream that breaks later raises
    EngineUnavailable, since trying again would repeat text the caller has already shown.
    """
    payload = _chat_payload(messages, model, max_tokens, temperature, stream=True)
    pool, avoid = replicas(engines), None
    with _chat_client(timeout) as client:
        for attempt in range(retries + 1):
            base = avoid = pool.acquire(avoid)
            url, reached = f"{base}/v1/chat/completions", False
            try:
                with client.stream("POST", url, json=payload) as response:
                    reached = True
                    if response.status_code in RETRYABLE_STATUSES:
                        response.read()
                        busy = _busy(url, response)
                        _wait_or_give_up(attempt, retries, busy, response, replicas=len(pool.urls))
                        continue
                    if response.status_code >= 400:
                        response.read()
                        _raise_for_error(url, response)
                    yield from _stream_deltas(url, response)
                    return
            except httpx.TransportError as error:
                _wait_or_give_up(attempt, retries, f"engine at {url} is unreachable: {error}", None)
            finally:
                pool.release(base, reached=reached)
    raise AssertionError("unreachable: the last attempt returns or raises")


def _stream_deltas(url: str, response: httpx.Response) -> Iterator[str]:
    try:
        for line in response.iter_lines():
            if not line.startswith("data:"):
                continue  # blank separators, comments and keep-alives
            data = line[len("data:") :].strip()
            if data == "[DONE]":
                return
            chunk = json.loads(data)
            if "error" in chunk:
                raise EngineUnavailable(f"engine at {url} failed mid-answer: {chunk['error'].get('message')}")
            for choice in chunk.get("choices", []):
                if content := choice.get("delta", {}).get("content"):
                    yield content
    except httpx.TransportError as error:
        raise EngineUnavailable(f"engine at {url} broke off the answer: {error}") from error


def _chat_client(timeout: float) -> httpx.Client:
    """A client for one chat request. It tells our engine how long it waits for the first token
    (X-First-Token-Timeout), so that the engine refuses at once (429, Retry-After) a request it would
    start only after this client has given up. A streamed answer must start within the read timeout;
    a whole one must arrive within it, so for `chat` the header is an upper bound."""
    headers = {"x-first-token-timeout": f"{timeout:g}"}
    return httpx.Client(timeout=timeout, verify=_tls_context(), headers=headers)


def _chat_payload(
    messages: list[dict[str, str]], model: str | None, max_tokens: int, temperature: float, *, stream: bool
) -> dict:
    payload = {"messages": messages, "max_tokens": max_tokens, "temperature": temperature, "stream": stream}
    if model is not None:
        payload["model"] = model
    return payload


def _wait_or_give_up(
    attempt: int, retries: int, reason: str, response: httpx.Response | None, *, replicas: int = 1
) -> None:
    """Sleep before the next try, or raise EngineUnavailable with `reason` when none is left. An
    engine asking for a longer wait than MAX_RETRY_WAIT_SECONDS (its queue is longer than we would
    wait) is given up on at once: the next try goes to another replica, or there is none."""
    if attempt >= retries:
        raise EngineUnavailable(f"{reason} (after {attempt + 1} tries)")
    wait = RETRY_BACKOFF_SECONDS * 2**attempt
    if response is not None:
        try:
            asked = float(response.headers.get("retry-after", wait))
        except ValueError:
            asked = wait  # an HTTP-date: rare enough that the backoff serves
        wait = asked if math.isfinite(asked) and asked >= 0 else wait
        if wait > MAX_RETRY_WAIT_SECONDS:
            if replicas > 1:
                return
            raise EngineUnavailable(f"{reason}; it asks to retry in {wait:g} s")
    time.sleep(wait)


def _busy(url: str, response: httpx.Response) -> str:
    return f"engine at {url} is busy ({response.status_code})"


def _raise_for_error(url: str, response: httpx.Response) -> None:
    if response.status_code < 400:
        return
    try:
        message = response.json()["error"]["message"]
    except (ValueError, KeyError, TypeError):
        message = response.text[:200]
    if response.status_code < 500:
        raise EngineRequestRejected(
            f"engine at {url} rejected the request ({response.status_code}): {message}"
        )
    raise EngineUnavailable(f"engine at {url} failed ({response.status_code}): {message}")
