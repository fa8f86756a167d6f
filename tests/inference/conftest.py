"""Fixtures for the engine's tests: the SmolLM2-135M builds (made on first use), runners and a tokenizer.

The builds go to the shared model cache ($KB_MODELS_DIR or ~/.cache/kb/models), so only the first run
on a machine pays for them (about a minute on two cores); later runs find them and skip the build.
"""

import pytest

from inference.build import build_generator
from inference.catalog import SMOLLM2_135M
from inference.chat import ChatTokenizer
from inference.model_store import models_dir
from inference.runner import ModelRunner

# Small enough that the tests' caches stay small, large enough for every prompt they use.
TEST_CONTEXT_TOKENS = 512


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
