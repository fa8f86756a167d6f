"""Hot swap over real HTTP: a `python -m inference.serve` with an admin token swaps its SmolLM2 build
(INT8 → FP32 → INT8) while clients keep asking; no request fails, later ones are answered by the new
build, the old one drains and is freed. Plus the admin route's refusals."""

import json
import sys
import threading
import time

import httpx
import pytest
from django.contrib.auth.models import Group, User
from django.core.management import CommandError, call_command

from inference.catalog import SMOLLM2_135M
from inference.client import served_build
from kb.models import AuditEvent, Collection
from kb.services.answers import ask as ask_kb
from tests.conftest import SMALL_ANSWER_SETTINGS, TEST_CONTEXT_TOKENS, child_environment, free_port, serve
from tests.inference.test_serve import QUESTION, health, metric, sse_events, wait_until
from tests.test_search_access import ingest

TOKEN = "test-admin-token"
CLIENTS = 4


@pytest.fixture(scope="module")
def admin_engine(smollm2_builds, tmp_path_factory):
    port = free_port()
    command = [sys.executable, "-m", "inference.serve", "--model", SMOLLM2_135M.name, "--port", str(port)]
    command += ["--max-batch", "2", "--max-queue", "8", "--context-length", str(TEST_CONTEXT_TOKENS)]
    env = child_environment(KB_ENGINE_ADMIN_TOKEN=TOKEN)
    with serve(command, f"http://127.0.0.1:{port}", "/health", tmp_path_factory.mktemp("engine"), env) as url:
        yield url


def activate(url, token=TOKEN, **body):
    headers = {"authorization": f"Bearer {token}"} if token else {}
    return httpx.post(f"{url}/admin/models/activate", json=body, headers=headers, timeout=120.0)


def ask(url, stream: bool) -> tuple[int, str | None, str | None]:
    """One request: its status, the build that answered (system_fingerprint) and its finish reason."""
    payload = {"messages": QUESTION, "max_tokens": 16, "temperature": 0, "stream": stream}
    if not stream:
        response = httpx.post(f"{url}/v1/chat/completions", json=payload, timeout=60.0)
        if response.status_code != 200:
            return response.status_code, None, None
        body = response.json()
        return 200, body["system_fingerprint"], body["choices"][0]["finish_reason"]
    with httpx.stream("POST", f"{url}/v1/chat/completions", json=payload, timeout=60.0) as response:
        if response.status_code != 200:
            return response.status_code, None, None
        events = sse_events(response.iter_lines())
    finish = [event["choices"][0]["finish_reason"] for event in events if event.get("choices")]
    return 200, events[0].get("system_fingerprint"), finish[-1]


def finished_requests(url) -> float:
    """Requests that ran to their max_tokens, as counted in /metrics (no line before the first)."""
    try:
        return metric(url, 'kb_engine_requests_finished_total{reason="length"}')
    except AssertionError:
        return 0


def test_swapping_builds_under_load_fails_no_request(admin_engine):
    finished_before = finished_requests(admin_engine)
    results: list[tuple[float, int, str | None, str | None]] = []
    stop = threading.Event()

    def client(index: int) -> None:
        while not stop.is_set():
            started = time.monotonic()
            results.append((started, *ask(admin_engine, stream=index % 2 == 1)))

    clients = [threading.Thread(target=client, args=(index,)) for index in range(CLIENTS)]
    for thread in clients:
        thread.start()
    try:
        time.sleep(1.0)
        to_fp32 = activate(admin_engine, model=SMOLLM2_135M.name, precision="fp32")
        fp32_from = time.monotonic()
        time.sleep(2.0)
        fp32_until = time.monotonic()
        to_int8 = activate(admin_engine, model=SMOLLM2_135M.name, precision="int8")
        time.sleep(1.0)
    finally:
        stop.set()
        for thread in clients:
            thread.join()

    assert to_fp32.status_code == to_int8.status_code == 200, (to_fp32.text, to_int8.text)
    assert to_fp32.json()["activated"]["precision"] == to_int8.json()["replaced"]["precision"] == "fp32"
    assert to_fp32.json()["replaced"]["precision"] == "int8"
    assert [status for _, status, _, _ in results] == [200] * len(results)
    assert {finish for _, _, _, finish in results} == {"length"}
    version = SMOLLM2_135M.version
    fingerprints = [fingerprint for _, _, fingerprint, _ in results]
    assert {f"{version}-int8", f"{version}-fp32"} <= set(fingerprints)
    # A request made once the swap had answered went to the new build.
    assert {fp for started, _, fp, _ in results if fp32_from <= started < fp32_until} == {f"{version}-fp32"}
    wait_until(lambda: health(admin_engine)["draining"] == [])
    status = health(admin_engine)
    assert [model["precision"] for model in status["models"]] == ["int8"]
    # Counters are the process's, not a build's: they span the swaps.
    assert finished_requests(admin_engine) - finished_before == len(results)


def test_activate_refuses_without_the_token_and_says_what_is_wrong(admin_engine, engine_url):
    model = SMOLLM2_135M.name
    assert activate(engine_url, model=model).status_code == 403  # started without a token
    assert "KB_ENGINE_ADMIN_TOKEN" in activate(engine_url, model=model).json()["error"]["message"]
    assert activate(admin_engine, token=None, model=model).status_code == 401
    assert activate(admin_engine, token="wrong", model=model).status_code == 401
    bad_json = httpx.post(
        f"{admin_engine}/admin/models/activate",
        content=b"{not json",
        headers={"authorization": f"Bearer {TOKEN}"},
        timeout=10.0,
    )
    assert bad_json.status_code == 400
    assert activate(admin_engine, precision="int8").status_code == 400  # no model
    assert activate(admin_engine, model=model, precision="int4").status_code == 400
    unknown = activate(admin_engine, model="gpt-4")
    assert (unknown.status_code, unknown.json()["error"]["code"]) == (404, "model_not_found")
    missing = activate(admin_engine, model=model, version="0.0.0-r0")
    assert (missing.status_code, missing.json()["error"]["code"]) == (400, "invalid_build")
    assert "manifest.json is missing" in missing.json()["error"]["message"]
    assert f"python -m inference.build {model}" in missing.json()["error"]["message"]
    # Nothing changed: the engine still serves its build and answers.
    assert health(admin_engine)["version"] == SMOLLM2_135M.version
    assert ask(admin_engine, stream=False)[0] == 200


def test_a_model_not_served_is_refused_with_the_served_names(admin_engine):
    response = httpx.post(
        f"{admin_engine}/v1/chat/completions",
        content=json.dumps({"model": "qwen2.5-coder-0.5b-instruct", "messages": QUESTION}),
        timeout=10.0,
    )
    assert response.status_code == 404
    assert SMOLLM2_135M.name in response.json()["error"]["message"]


@pytest.fixture
def admin_settings(settings, admin_engine):
    """The answering side pointed at the admin engine, with its token; the engine is left on INT8."""
    settings.ENGINE_URLS = [admin_engine]
    settings.KB_ENGINE_ADMIN_TOKEN = TOKEN
    for name, value in SMALL_ANSWER_SETTINGS.items():
        setattr(settings, name, value)
    served_build.clear()
    yield settings
    activate(admin_engine, model=SMOLLM2_135M.name, precision="int8")
    served_build.clear()


@pytest.mark.django_db
def test_activate_model_command_swaps_every_engine_and_is_audited(admin_settings, admin_engine, capsys):
    call_command("activate_model", SMOLLM2_135M.name, "--precision", "fp32")
    output = capsys.readouterr().out
    assert f"{admin_engine}: serving {SMOLLM2_135M.name} {SMOLLM2_135M.version} fp32" in output
    assert "(was smollm2-135m-instruct 0.1.2-r1 int8" in output
    assert health(admin_engine)["precision"] == "fp32"
    event = AuditEvent.objects.get(action="model_activated")
    assert "activate_model command" in event.actor_name
    assert (event.detail["activated"]["precision"], event.detail["replaced"]["precision"]) == ("fp32", "int8")
    with pytest.raises(CommandError, match="manifest.json is missing"):
        call_command("activate_model", SMOLLM2_135M.name, "--build-version", "0.0.0-r0")
    admin_settings.KB_ENGINE_ADMIN_TOKEN = ""
    with pytest.raises(CommandError, match="KB_ENGINE_ADMIN_TOKEN is not set"):
        call_command("activate_model", SMOLLM2_135M.name)


@pytest.mark.django_db
def test_a_cached_answer_is_not_served_once_another_build_answers(admin_settings, admin_engine):
    hr, staff = Collection.objects.create(name="HR"), Group.objects.create(name="staff")
    hr.reader_groups.add(staff)
    alice = User.objects.create_user("alice", password="pw-alice-123")
    alice.groups.add(staff)
    ingest(hr, "leave.md", b"# Leave\n\nEmployees may carry over five days of annual leave.\n")
    question = "How many days of annual leave carry over?"
    first = ask_kb(user=alice, question=question)
    assert ask_kb(user=alice, question=question).cache_hit
    call_command("activate_model", SMOLLM2_135M.name, "--precision", "fp32")
    served_build.clear()  # as after its few seconds of memory
    after_swap = ask_kb(user=alice, question=question)
    assert not after_swap.cache_hit and after_swap.answer != first.answer
