"""What the web side uses to talk to an engine: any OpenAI-compatible chat-completions server."""

import httpx


class EngineUnavailable(RuntimeError):
    pass


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
