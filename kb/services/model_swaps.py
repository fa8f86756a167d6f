"""Swapping the generator build the engines serve, one engine after another, recorded in the audit log."""

from dataclasses import dataclass

from django.conf import settings

from inference.client import EngineRequestRejected, EngineUnavailable, activate_model
from kb.services import audit


class SwapFailed(RuntimeError):
    """An engine refused or could not take the build; the engines before it in the list have it."""


@dataclass(frozen=True)
class Swap:
    engine: str
    activated: dict
    replaced: dict | None


def activate_everywhere(
    model: str, *, version: str | None, precision: str, actor_name: str, on_swap=None
) -> list[Swap]:
    """Have every engine of ENGINE_URLS serve the build, in turn, so that the others keep answering
    while one loads; each engine keeps serving until its new build is ready. Stops at the first
    engine that fails (SwapFailed), leaving the rest on their builds."""
    if not settings.ENGINE_URLS:
        raise SwapFailed("no engine is configured (ENGINE_URLS)")
    if not settings.KB_ENGINE_ADMIN_TOKEN:
        raise SwapFailed("KB_ENGINE_ADMIN_TOKEN is not set: the engines' admin API needs it")
    swaps = []
    for url in settings.ENGINE_URLS:
        try:
            reply = activate_model(
                url, settings.KB_ENGINE_ADMIN_TOKEN, model, version=version, precision=precision
            )
        except (EngineUnavailable, EngineRequestRejected) as error:
            raise SwapFailed(str(error)) from error
        swap = Swap(url, reply["activated"], reply["replaced"])
        audit.record(
            action="model_activated",
            actor_name=actor_name,
            engine=url,
            activated=swap.activated,
            replaced=swap.replaced,
        )
        swaps.append(swap)
        if on_swap is not None:
            on_swap(swap)
    return swaps
