"""Errors of a streamed answer arrive as one `error` event, with the codes the JSON API uses."""

import asyncio
import json

from kb.streaming import _events
from retrieval.errors import SearchTooCostly


def streamed(ask) -> list[tuple[str, dict]]:
    async def collect():
        return [chunk async for chunk in _events(ask, lambda question: {}, "answer")]

    events = []
    for chunk in asyncio.run(collect()):
        name, data = chunk.strip().split("\n")
        events.append((name.removeprefix("event: "), json.loads(data.removeprefix("data: "))))
    return events


def test_a_service_error_is_streamed_with_the_code_the_api_answers_it_with():
    reason = "the search took longer than 5 s and was stopped"

    def ask(on_token, on_search):
        on_search("leave policy")
        raise SearchTooCostly(reason)

    assert streamed(ask) == [
        ("search", {"query": "leave policy"}),
        ("error", {"code": "search_too_costly", "message": reason}),
    ]


def test_an_unexpected_failure_is_streamed_without_its_details():
    def ask(on_token, on_search):
        raise RuntimeError("connection to /var/secret/engine.sock refused")

    [(name, data)] = streamed(ask)
    assert (name, data["code"]) == ("error", "internal_error") and "secret" not in data["message"]
