import pytest
from tokenizers import Tokenizer

MESSAGES = [
    [{"role": "user", "content": "Hi there"}],
    [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello!"},
        {"role": "user", "content": "Why?"},
    ],
]


@pytest.mark.parametrize("messages", MESSAGES)
def test_prompt_is_rendered_and_tokenized_exactly_as_transformers_does(
    smollm2_builds, tokenizer, messages, monkeypatch
):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    from transformers import AutoTokenizer

    reference = AutoTokenizer.from_pretrained(smollm2_builds["int8"], local_files_only=True)
    expected = reference.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert tokenizer.render(messages) == expected
    assert tokenizer.encode(expected) == reference(expected, add_special_tokens=False)["input_ids"]


def test_system_turn_rendered_alone_starts_the_full_prompt(tokenizer):
    system = MESSAGES[1][:1]
    assert tokenizer.render(MESSAGES[1]).startswith(tokenizer.render(system, add_generation_prompt=False))


def test_end_of_sequence_is_the_chatml_end_of_turn(smollm2_builds, tokenizer):
    vocabulary = Tokenizer.from_file(str(smollm2_builds["int8"] / "tokenizer.json"))
    assert [vocabulary.id_to_token(token) for token in tokenizer.eos_token_ids] == ["<|im_end|>"]
