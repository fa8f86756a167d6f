"""The same generator run by llama.cpp at 8 bits (Q8_0): the reference the INT8 engine is held to.

llama-cpp-python is not a dependency: it compiles llama.cpp when installed, so it is installed only
to run this comparison (`pip install llama-cpp-python`). The Q8_0 file is made from the generator's
own GGUF (the one the ONNX builds come from) with llama.cpp's quantizer, so both engines run the
same weights; it is written to a temporary directory beside the builds and removed afterwards.
Measured as inference.bench measures the ONNX builds: time to first token is the prefill of the
whole prompt plus picking the first token; decoding is greedy, one token per step, for `new_tokens`
steps whatever the tokens are.
"""

import ctypes
import importlib.util
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from inference.bench import FILLER
from inference.build import assemble_gguf, locate_sources
from inference.catalog import Generator
from inference.model_store import models_dir

NOT_INSTALLED = "llama-cpp-python is not installed; `pip install llama-cpp-python` (only for this benchmark)"


def llama_cpp_available() -> bool:
    return importlib.util.find_spec("llama_cpp") is not None


def llama_cpp_q8_rates(generator: Generator, prompt_tokens: tuple[int, ...], new_tokens: int) -> dict:
    """{"version", "quantization", "<prompt tokens>": {"time_to_first_token_s", "decode_tokens_per_s"}}."""
    import llama_cpp

    root = models_dir() / generator.name
    root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=root, prefix=".llama-cpp-") as work:
        source, q8 = Path(work) / generator.gguf_name, Path(work) / "q8_0.gguf"
        assemble_gguf(generator, locate_sources(generator), source)
        _quantize_q8(llama_cpp, source, q8)
        source.unlink()
        model = llama_cpp.Llama(
            model_path=str(q8),
            n_ctx=max(prompt_tokens) + new_tokens + 8,
            n_batch=512,
            n_threads=os.cpu_count(),
            verbose=False,
        )
        measured = {"version": llama_cpp.__version__, "quantization": "Q8_0", "threads": os.cpu_count()}
        filler = model.tokenize(FILLER.encode(), add_bos=False)
        for tokens in prompt_tokens:
            prompt = (filler * (tokens // len(filler) + 1))[:tokens]
            measured[str(tokens)] = _rates(model, prompt, new_tokens)
        model.close()
    return measured


def _quantize_q8(llama_cpp, source: Path, destination: Path) -> None:
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = llama_cpp.LLAMA_FTYPE_MOSTLY_Q8_0
    params.allow_requantize = True  # the packaged GGUF is already quantized (Q4_K_M / Q4_1)
    if llama_cpp.llama_model_quantize(str(source).encode(), str(destination).encode(), ctypes.byref(params)):
        raise RuntimeError(f"llama.cpp could not quantize {source} to Q8_0")


def _rates(model, prompt: list[int], new_tokens: int) -> dict:
    model.reset()
    started = time.perf_counter()
    token = _next(model, prompt)
    first_token = time.perf_counter() - started
    started = time.perf_counter()
    for _ in range(new_tokens):
        token = _next(model, [token])
    decode = new_tokens / (time.perf_counter() - started)
    return {"time_to_first_token_s": round(first_token, 2), "decode_tokens_per_s": round(decode, 2)}


def _next(model, tokens: list[int]) -> int:
    """Feed `tokens` and pick the most likely next one from the last position's logits."""
    import llama_cpp

    model.eval(tokens)
    logits = np.ctypeslib.as_array(llama_cpp.llama_get_logits(model.ctx), shape=(model.n_vocab(),))
    return int(np.argmax(logits))
