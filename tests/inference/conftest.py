"""Fixtures for the engine's tests: runners and a tokenizer over the SmolLM2-135M builds, which
tests/conftest.py makes."""

import pytest

from inference.chat import ChatTokenizer
from inference.runner import ModelRunner
from tests.conftest import TEST_CONTEXT_TOKENS


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
