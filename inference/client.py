"""What the web side uses to talk to an engine: any OpenAI-compatible chat-completions server."""

import json
import time
from collections.abc import Iterator

import httpx


class EngineUnavailable(RuntimeError):
    """The engine cannot be reached, stayed busy through every retry, or failed while answering."""


def engine_health(base_url: str, timeout: float = 2.0) -> dict:
    """Ask the engine whether it is up.

    Our own engine answers GET /health; other OpenAI-compatible servers (vLLM, llama.cpp,
    Ollama) all answer GET /v1/models, which is tried when /health does not exist.
    """
    base = base_url.rstrip("/")
    try:
        with httpx.Client(timeout=timeout) as client:
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


class EngineRequestRejected(RuntimeError):
    """The engine refused the request itself (4xx other than 429): retrying the same request cannot help."""


# Statuses that mean "busy now, try again": 429 (queue full) and 503 (overloaded or starting).
RETRYABLE_STATUSES = frozenset({429, 503})
# Waits between tries: after a connection error, RETRY_BACKOFF_SECONDS doubling each time; after
# 429/503, the server's Retry-After, capped so that a web request never stalls on one engine for long.
RETRY_BACKOFF_SECONDS = 0.5
MAX_RETRY_WAIT_SECONDS = 10.0


def chat(
    base_url: str,
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
                base_url,
                messages,
                model=model,
                max_tokens=max_tokens,
                temperature=temperature,
                timeout=timeout,
                retries=retries,
            )
        )
    payload = _chat_payload(messages, model, max_tokens, temperature, stream=False)
    url = f"{base_url.rstrip('/')}/v1/chat/completions"
    with httpx.Client(timeout=timeout) as client:
        for attempt in range(retries + 1):
            try:
                response = client.post(url, json=payload)
            except httpx.TransportError as error:
                _wait_or_give_up(attempt, retries, f"engine at {url} is unreachable: {error}", None)
                continue
            if response.status_code in RETRYABLE_STATUSES:
                _wait_or_give_up(attempt, retries, _busy(url, response), response)
                continue
            _raise_for_error(url, response)
            return response.json()["choices"][0]["message"]["content"] or ""
    raise AssertionError("unreachable: the last attempt returns or raises")


def chat_stream(
    base_url: str,
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
    url = f"{base_url.rstrip('/')}/v1/chat/completions"
    with httpx.Client(timeout=timeout) as client:
        for attempt in range(retries + 1):
            try:
                with client.stream("POST", url, json=payload) as response:
                    if response.status_code in RETRYABLE_STATUSES:
                        response.read()
                        _wait_or_give_up(attempt, retries, _busy(url, response), response)
                        continue
                    if response.status_code >= 400:
                        response.read()
                        _raise_for_error(url, response)
                    yield from _stream_deltas(url, response)
                    return
            except httpx.TransportError as error:
                _wait_or_give_up(attempt, retries, f"engine at {url} is unreachable: {error}", None)
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


def _chat_payload(
    messages: list[dict[str, str]], model: str | None, max_tokens: int, temperature: float, *, stream: bool
) -> dict:
    payload = {"messages": messages, "max_tokens": max_tokens, "temperature": temperature, "stream": stream}
    if model is not None:
        payload["model"] = model
    return payload


def _wait_or_give_up(attempt: int, retries: int, reason: str, response: httpx.Response | None) -> None:
    """Sleep before the next try, or raise EngineUnavailable with `reason` when none is left."""
    if attempt >= retries:
        raise EngineUnavailable(f"{reason} (after {attempt + 1} tries)")
    wait = RETRY_BACKOFF_SECONDS * 2**attempt
    if response is not None:
        try:
            wait = float(response.headers.get("retry-after", wait))
        except ValueError:
            pass  # an HTTP-date: rare enough that the backoff serves
    time.sleep(min(wait, MAX_RETRY_WAIT_SECONDS))


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
