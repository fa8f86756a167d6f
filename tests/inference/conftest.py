"""Fixtures for the engine's tests: the SmolLM2-135M builds (made on first use), runners, a tokenizer
and a running engine service.

The builds go to the shared model cache ($KB_MODELS_DIR or ~/.cache/kb/models), so only the first run
on a machine pays for them (about a minute on two cores); later runs find them and skip the build.
"""

import socket
import subprocess
import sys
import time

import httpx
import pytest

from inference.build import build_generator
from inference.catalog import SMOLLM2_135M
from inference.chat import ChatTokenizer
from inference.model_store import models_dir
from inference.runner import ModelRunner
from tests.conftest import die_with_parent

# Small enough that the tests' caches stay small, large enough for every prompt they use.
TEST_CONTEXT_TOKENS = 512
# Loading SmolLM2 takes 2-3 s; the margin is for a loaded CI machine.
SERVICE_START_SECONDS = 60


@pytest.fixture(scope="session")
def smollm2_builds():
    return build_generator(SMOLLM2_135M, root=models_dir())


@pytest.fixture(scope="session")
def int8_runner(smollm2_builds):
    return ModelRunner(smollm2_builds["int8"], context_length=TEST_CONTEXT_TOKENS)


@pytest.fixture(scope="session")
def fp32_runner(smollm2_builds):
    return ModelRunner(smollm2_builds["fp32"], context_length=TEST_CONTEXT_TOKENS)


@pytest.fixture(scope="session")
def tokenizer(smollm2_builds):
    return ChatTokenizer(smollm2_builds["int8"])


@pytest.fixture(scope="session")
def question_ids(tokenizer):
    """A short chat prompt that SmolLM2 answers with more than twenty tokens."""
    messages = [{"role": "user", "content": "What is the capital of France? Tell me about it."}]
    return tokenizer.encode(tokenizer.render(messages))


@pytest.fixture(scope="session")
def engine_url(smollm2_builds, tmp_path_factory):
    """A real `python -m inference.serve` on a free port with the SmolLM2 INT8 build, for HTTP tests.

    Two sequences at a time and one more waiting, so that tests can fill the engine with three streams.
    """
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [sys.executable, "-m", "inference.serve", "--model", SMOLLM2_135M.name, "--port", str(port)]
    command += ["--max-batch", "2", "--max-queue", "1", "--context-length", str(TEST_CONTEXT_TOKENS)]
    # A file, not a pipe: nobody reads the log while tests run, and a full pipe would block the server.
    log_path = tmp_path_factory.mktemp("engine") / "serve.log"
    log = log_path.open("w")
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, preexec_fn=die_with_parent)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + SERVICE_START_SECONDS
    while True:
        try:
            httpx.get(f"{url}/health", timeout=1.0).raise_for_status()
            break
        except httpx.HTTPError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                process.wait()
                pytest.fail(f"the engine did not start:\n{log_path.read_text()}")
            time.sleep(0.2)
    yield url
    process.terminate()
    process.wait(timeout=10)
    log.close()
