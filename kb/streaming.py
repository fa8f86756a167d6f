"""An answer as server-sent events: a `search` event with a follow-up's standalone rewrite, `token`
events while the engine writes, then one final event.

The question is answered in a thread of its own, so the event loop keeps serving other requests
while the engine generates; tokens cross into the loop through an asyncio queue. Under ASGI
(uvicorn) each event reaches the client as soon as it exists. A client that goes away stops the
stream, not the answer: it is stored all the same and appears in the asker's history.
"""

import asyncio
import json
import logging
import threading
from collections.abc import AsyncIterator, Callable

from asgiref.sync import sync_to_async
from django.db import connections
from django.http import StreamingHttpResponse

from kb.api.errors import service_error
from kb.models import Question
from kb.services.connections import release_connection

logger = logging.getLogger(__name__)

Ask = Callable[[Callable[[str], None], Callable[[str], None]], Question]  # called with on_token, on_search
Payload = Callable[[Question], dict]


def event(name: str, data: dict) -> str:
    return f"event: {name}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n"


def answer_stream(ask: Ask, payload: Payload, *, final_event: str = "answer") -> StreamingHttpResponse:
    response = StreamingHttpResponse(_events(ask, payload, final_event), content_type="text/event-stream")
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"  # a proxy such as nginx must not hold the events back
    return response


async def _events(ask: Ask, payload: Payload, final_event: str) -> AsyncIterator[str]:
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[tuple[str, dict]] = asyncio.Queue()

    def send(name: str, data: dict) -> None:
        loop.call_soon_threadsafe(queue.put_nowait, (name, data))

    def work() -> None:
        try:
            question = ask(
                lambda text: send("token", {"text": text}), lambda query: send("search", {"query": query})
            )
            send(final_event, payload(question))
        except Exception as error:
            known = service_error(error)
            if known:
                send("error", {"code": known[1], "message": str(error)})
            else:
                logger.exception("answering a streamed question failed")
                send("error", {"code": "internal_error", "message": "the answer could not be completed"})
        finally:
            connections.close_all()  # this thread's connections; Django closes its own threads' only

    # The request's own thread would hold its connection until the stream ends; the answer takes
    # one of its own in its thread.
    await sync_to_async(release_connection)()
    threading.Thread(target=work, name="answer-stream", daemon=True).start()
    while True:
        name, data = await queue.get()
        yield event(name, data)
        if name not in ("token", "search"):
            return
