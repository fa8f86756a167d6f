"""Turning chat messages into token ids and token ids back into text, as the model was trained to see them.

Each build folder carries the model's own tokenizer (`tokenizer.json`) and chat template
(`chat_template.jinja`, taken from the GGUF: ChatML for Qwen, SmolLM2's own for SmolLM2). The
template is rendered the way transformers renders it, without importing transformers or torch.
"""

import json
from pathlib import Path

from jinja2.ext import loopcontrols
from jinja2.sandbox import ImmutableSandboxedEnvironment
from tokenizers import Tokenizer


class ChatTokenizer:
    """The tokenizer, chat template and end-of-sequence tokens of one build."""

    def __init__(self, build_dir: Path) -> None:
        self._tokenizer = Tokenizer.from_file(str(build_dir / "tokenizer.json"))
        # Same environment options as transformers' apply_chat_template, so templates render identically.
        environment = ImmutableSandboxedEnvironment(
            trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols]
        )
        environment.globals["raise_exception"] = _raise_template_error
        self._template = environment.from_string((build_dir / "chat_template.jinja").read_text())
        model = json.loads((build_dir / "genai_config.json").read_text())["model"]
        eos = model["eos_token_id"]
        self.eos_token_ids = frozenset(eos if isinstance(eos, list) else [eos])

    def render(self, messages: list[dict[str, str]], *, add_generation_prompt: bool = True) -> str:
        """The prompt text for `messages` ({"role", "content"} dicts), ending where the assistant answers.

        Without the generation prompt it renders only the given turns, e.g. a fixed system prompt whose
        KV cache is computed once (PrefixCache); a full prompt with more turns starts with that text.
        """
        return self._template.render(messages=messages, add_generation_prompt=add_generation_prompt)

    def encode(self, text: str) -> list[int]:
        """Token ids of `text`; special tokens come from the text itself (the template writes them)."""
        return self._tokenizer.encode(text, add_special_tokens=False).ids

    def decode(self, token_ids: list[int]) -> str:
        return self._tokenizer.decode(token_ids, skip_special_tokens=True)


def _raise_template_error(message: str) -> None:
    raise ValueError(f"chat template rejected the messages: {message}")
