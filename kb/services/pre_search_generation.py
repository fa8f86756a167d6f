"""The short generations made before a search (a follow-up's rewrite, a question's paraphrase or
hypothetical answer): asked of KB_REWRITE_MODEL, given up on after KB_REWRITE_TIMEOUT and never
retried, since whatever calls it has a fallback and a busy engine should get the answers instead."""

from django.conf import settings

from inference.client import EngineRequestRejected, EngineUnavailable, chat
from kb.services.connections import release_connection


def pre_search_generation(messages: list[dict[str, str]], *, max_tokens: int) -> str | None:
    """The engine's greedy reply, or None when it is down, busy, slow or refuses the request."""
    release_connection()
    try:
        return chat(
            settings.ENGINE_URLS,
            messages,
            model=settings.KB_REWRITE_MODEL,
            max_tokens=max_tokens,
            temperature=0.0,
            timeout=settings.KB_REWRITE_TIMEOUT,
            retries=0,
        )
    except (EngineUnavailable, EngineRequestRejected):
        return None
