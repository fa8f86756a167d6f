"""The engine pool in process, over the real SmolLM2 builds: requests go to the build serving their
model, a swap sends later requests to the new build while earlier ones finish on the old, which is
then freed; a broken build or a second swap at once changes nothing."""

import asyncio
import gc
import threading
import time
import weakref

import pytest

from inference.engine import Engine
from inference.model_store import InvalidBuild
from inference.pool import EnginePool, ModelLoading, SwapInProgress, UnknownModel
from inference.sampling import SamplingParams
from tests.conftest import TEST_CONTEXT_TOKENS

MODEL = "smollm2-135m-instruct"
QUESTION = [{"role": "user", "content": "What is the capital of France? Tell me about it."}]
GREEDY = SamplingParams(temperature=0.0, max_tokens=24)


def load(directory):
    return Engine(directory, max_batch=2, max_queue=4, context_length=TEST_CONTEXT_TOKENS)


@pytest.fixture
def pool():
    pool = EnginePool(load)
    yield pool
    pool.stop()


async def answer(completion) -> tuple[str, str | None]:
    text, finish_reason = [], None
    async for chunk in completion.chunks():
        text.append(chunk.text)
        finish_reason = chunk.finish_reason
    return "".join(text), finish_reason


def wait_until(condition, timeout=30.0):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.05)


def test_a_swap_finishes_earlier_requests_on_the_old_build_and_frees_it(pool, smollm2_builds):
    pool.activate(smollm2_builds["int8"], MODEL)
    old = weakref.ref(pool.engines()[0])

    async def scenario():
        before = pool.submit(None, QUESTION, GREEDY)  # None: the default model, the first activated
        await asyncio.to_thread(pool.activate, smollm2_builds["fp32"], MODEL)
        after = pool.submit(MODEL, QUESTION, GREEDY)
        return (before.served_by, await answer(before)), (after.served_by, await answer(after))

    (old_build, (old_text, old_finish)), (new_build, (new_text, new_finish)) = asyncio.run(scenario())
    assert (old_build["precision"], new_build["precision"]) == ("int8", "fp32")
    assert old_finish == new_finish == "length"
    assert old_text and new_text
    assert [engine.describe()["precision"] for engine in pool.engines()] == ["fp32"]
    wait_until(lambda: not pool.draining())
    gc.collect()
    assert old() is None, "the replaced engine is still referenced"


def test_requests_name_a_served_model_or_wait_for_one_that_loads(smollm2_builds):
    release = threading.Event()

    def slow_load(directory):
        release.wait(30)
        return load(directory)

    slow = EnginePool(slow_load)
    loading = threading.Thread(target=slow.activate, args=(smollm2_builds["int8"], MODEL))
    loading.start()

    async def submit(model):
        return slow.submit(model, QUESTION, GREEDY)

    def refused_as_loading():
        try:
            asyncio.run(submit(MODEL))
        except ModelLoading:
            return True
        except UnknownModel:  # the loading thread has not begun yet
            return False
        raise AssertionError("a model still loading accepted a request")

    try:
        wait_until(refused_as_loading)
        with pytest.raises(UnknownModel, match="serves none"):
            asyncio.run(submit("qwen2.5-coder-0.5b-instruct"))
        with pytest.raises(SwapInProgress):
            slow.activate(smollm2_builds["fp32"], MODEL)
    finally:
        release.set()
        loading.join()
        slow.stop()
    assert [engine.describe()["precision"] for engine in slow.engines()] == ["int8"]


def test_a_broken_build_leaves_the_served_one_in_place(pool, smollm2_builds, tmp_path):
    pool.activate(smollm2_builds["int8"], MODEL)
    with pytest.raises(InvalidBuild, match="manifest.json is missing"):
        pool.activate(tmp_path, MODEL)

    async def ask():
        return await answer(pool.submit(MODEL, QUESTION, GREEDY))

    assert asyncio.run(ask())[1] == "length"
    assert [engine.describe()["precision"] for engine in pool.engines()] == ["int8"]
    # The failed load left no mark: the same model can be activated again.
    pool.activate(smollm2_builds["fp32"], MODEL)
