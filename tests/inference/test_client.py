"""The web side's engine client against the real engine service (conftest `engine_url`)."""

import socket
import threading
import time
from contextlib import ExitStack
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from inference.client import EngineRequestRejected, EngineUnavailable, Replicas, chat, chat_stream
from tests.inference.test_serve import (
    MAX_TOKENS,
    QUESTION,
    assert_idle,
    in_process,
    metric,
    open_stream,
    wait_until,
)


def test_chat_returns_the_answer_text(engine_url, int8_runner, tokenizer):
    assert (
        chat(engine_url, QUESTION, max_tokens=MAX_TOKENS) == in_process(int8_runner, tokenizer, QUESTION)[0]
    )


def test_chat_stream_yields_the_answer_in_pieces(engine_url, int8_runner, tokenizer):
    deltas = list(chat_stream(engine_url, QUESTION, max_tokens=MAX_TOKENS))
    assert len(deltas) > 1
    assert "".join(deltas) == in_process(int8_runner, tokenizer, QUESTION)[0]


def test_chat_retries_a_full_engine_after_retry_after_and_gets_its_answer(engine_url, int8_runner, tokenizer):
    rejected = metric(engine_url, "kb_engine_requests_rejected_total")
    answers = []
    client = threading.Thread(
        target=lambda: answers.append(chat(engine_url, QUESTION, max_tokens=MAX_TOKENS, retries=5))
    )
    with ExitStack() as streams:
        for _ in range(3):
            open_stream(streams, engine_url)
        client.start()
        wait_until(lambda: metric(engine_url, "kb_engine_requests_rejected_total") > rejected)
    client.join(timeout=60)
    assert answers == [in_process(int8_runner, tokenizer, QUESTION)[0]]
    assert_idle(engine_url)


def test_unreachable_engine_raises_engine_unavailable_after_its_retries():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    started = time.monotonic()
    with pytest.raises(EngineUnavailable, match="after 2 tries"):
        chat(f"http://127.0.0.1:{closed_port}", QUESTION, max_tokens=MAX_TOKENS, retries=1, timeout=2.0)
    assert time.monotonic() - started >= 0.5, "it waited before trying again"


def test_rejected_request_is_not_retried_and_says_why(engine_url):
    with pytest.raises(EngineRequestRejected, match="not served here"):
        chat(engine_url, QUESTION, model="gpt-4", max_tokens=MAX_TOKENS, retries=5)
    with pytest.raises(EngineRequestRejected, match="temperature"):
        list(chat_stream(engine_url, QUESTION, temperature=7.0, retries=5))


class BusyEngine(BaseHTTPRequestHandler):
    """An engine whose queue is longer than any client waits: 429 asking to retry in a minute."""

    first_token_timeouts: list[str] = []

    def do_POST(self):
        self.first_token_timeouts.append(self.headers.get("x-first-token-timeout"))
        self.rfile.read(int(self.headers["content-length"]))
        body = b'{"error": {"message": "queue too long", "code": "queue_wait_too_long"}}'
        self.send_response(429)
        self.send_header("retry-after", "60")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def test_a_client_tells_its_timeout_and_gives_up_at_once_when_asked_to_wait_longer_than_it_stalls():
    server = ThreadingHTTPServer(("127.0.0.1", 0), BusyEngine)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    BusyEngine.first_token_timeouts.clear()
    try:
        started = time.monotonic()
        with pytest.raises(EngineUnavailable, match="retry in 60 s"):
            chat(url, QUESTION, max_tokens=MAX_TOKENS, retries=5, timeout=45.0)
        with pytest.raises(EngineUnavailable, match="retry in 60 s"):
            list(chat_stream(url, QUESTION, max_tokens=MAX_TOKENS, retries=5, timeout=30.0))
        assert time.monotonic() - started < 5, "it did not wait for the engine's minute"
    finally:
        server.shutdown()
    assert BusyEngine.first_token_timeouts == ["45", "30"]  # one try each, each saying how long it waits


def test_a_replica_asking_for_a_long_wait_is_passed_over_at_once_for_another():
    servers = [ThreadingHTTPServer(("127.0.0.1", 0), BusyEngine) for _ in range(2)]
    for server in servers:
        threading.Thread(target=server.serve_forever, daemon=True).start()
    urls = [f"http://127.0.0.1:{server.server_address[1]}" for server in servers]
    BusyEngine.first_token_timeouts.clear()
    try:
        started = time.monotonic()
        with pytest.raises(EngineUnavailable, match="after 2 tries"):
            chat(urls, QUESTION, max_tokens=MAX_TOKENS, retries=1, timeout=45.0)
        assert time.monotonic() - started < 5, "it waited instead of trying the other replica"
    finally:
        for server in servers:
            server.shutdown()
    assert BusyEngine.first_token_timeouts == ["45", "45"]


def closed_port_url() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{probe.getsockname()[1]}"


def test_replicas_take_requests_by_fewest_in_flight_ties_in_turn():
    replicas = Replicas(["http://a", "http://b", "http://c"])
    assert sorted(replicas.acquire() for _ in range(3)) == ["http://a", "http://b", "http://c"]
    replicas.release("http://b")
    assert replicas.acquire() == "http://b"  # the only one with a request fewer in flight
    for url in ("http://a", "http://b", "http://c"):
        replicas.release(url)
    # All idle again: in turn, so that each gets one of the next three.
    assert sorted(replicas.acquire() for _ in range(3)) == ["http://a", "http://b", "http://c"]


def test_a_retry_goes_to_another_replica_and_an_unreachable_one_is_passed_over():
    replicas = Replicas(["http://a", "http://b"])
    assert replicas.acquire(avoid="http://a") == "http://b"
    replicas.release("http://b", reached=False)  # could not connect
    picks = []
    for _ in range(4):
        picks.append(replicas.acquire())
        replicas.release(picks[-1])
    assert picks == ["http://a"] * 4
    # Still tried when it is the only other choice left.
    assert replicas.acquire(avoid="http://a") == "http://b"


def test_answers_come_from_the_live_replica_when_another_is_down(engine_url, int8_runner, tokenizer):
    engines = [closed_port_url(), engine_url]
    expected = in_process(int8_runner, tokenizer, QUESTION)[0]
    for _ in range(3):
        assert chat(engines, QUESTION, max_tokens=MAX_TOKENS, retries=1) == expected
    assert "".join(chat_stream(engines, QUESTION, max_tokens=MAX_TOKENS, retries=1)) == expected
