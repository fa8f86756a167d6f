"""`manage.py bench generation`: what the answer generator costs on this machine, as JSON.

For the served generator (KB_ENGINE_MODEL) at INT8 and FP32, whichever are built: the size of each
build; time to first token and decode tokens/s for prompts of 512 and 1,024 tokens with 128 new
tokens (inference.bench's single-sequence measurements). For the INT8 build behind the engine's own
scheduler (dynamic batching, the engine's default batch size): total tokens/s of 1, 8 and 32
requests sent at once, prefill included, as the HTTP clients see it; time to first token of the
standard answer prompt (the answering pipeline's messages: instructions, KB_ANSWER_SOURCES excerpts
of the KB_ANSWER_SOURCE_CHARS sizes, a question), first with the engine's system-prefix cache cold,
then warm; and answers per second when a batch of such questions arrives at once (for sizing). And
the quality check of INT8: both precisions answer the first `quality_questions` answerable English
dev questions greedily from that same prompt (the excerpt holding the evidence first): how many
answers contain a gold answer, and how many INT8 answers are FP32's word for word. Where
llama-cpp-python is installed, the same single-sequence measurements of llama.cpp running the same
weights at Q8_0 (inference.llama_cpp_bench), the reference INT8 decoding is held to.
A benchmark, not a test: numbers move with whatever else the machine is doing.
"""

import asyncio
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import onnxruntime as ort
from django.conf import settings

from inference.bench import decode_rate, prompt_of, time_to_first_token
from inference.catalog import PRECISIONS, generator_named
from inference.chat import ChatTokenizer
from inference.engine import Engine
from inference.generation import generate
from inference.llama_cpp_bench import NOT_INSTALLED, llama_cpp_available, llama_cpp_q8_rates
from inference.model_store import build_path, models_dir, read_manifest
from inference.runner import ModelRunner
from inference.sampling import SamplingParams
from inference.serve import DEFAULT_MAX_BATCH
from kb.answering.prompt import answer_messages
from kb.answering.sources import excerpt_sizes
from kb.services.evaluation import Question, load_questions

PROMPT_TOKENS = (512, 1024)
NEW_TOKENS = 128
CONCURRENCY = (1, 8, 32)
QUALITY_QUESTIONS = 20
# Short, so that 32 prefills do not dominate the throughput of decoding together.
CONCURRENT_MESSAGES = [{"role": "user", "content": "Describe in detail how a company library is organised."}]
# The targets on a 2-core CPU.
TARGETS = {
    "int8_decode_speedup_at_least": 2.0,
    "8_concurrent_over_1_at_least": 4.0,
    "answer_prompt_first_token_at_most_s": 4.0,
    "int8_decode_over_llama_cpp_q8_at_least": 0.8,
}


class GenerationBenchmarkError(Exception):
    """Nothing to measure (no build of the model, no dev question to build the prompt from)."""


@dataclass(frozen=True)
class Excerpt:
    """What answer_messages reads of a kb.answering.sources.Source, without a database behind it."""

    number: int
    title: str
    text: str
    page: int | None = None


def bench_generation(
    *,
    docs: Path,
    questions: Path,
    model: str | None = None,
    prompt_tokens: tuple[int, ...] = PROMPT_TOKENS,
    new_tokens: int = NEW_TOKENS,
    concurrency: tuple[int, ...] = CONCURRENCY,
    quality_questions: int = QUALITY_QUESTIONS,
    on_step: Callable[[str], None] | None = None,
) -> dict:
    model = model or settings.KB_ENGINE_MODEL
    generator = generator_named(model)
    builds = {
        precision: path
        for precision in PRECISIONS
        if (path := build_path(models_dir(), model, generator.version, precision)).is_dir()
    }
    if "int8" not in builds:
        raise GenerationBenchmarkError(f"{model} has no INT8 build: run ./run manage build_models {model}")
    dev = _answerable(docs, questions)[:quality_questions]
    if not dev:
        raise GenerationBenchmarkError(f"{questions} holds no answerable English question with its document")
    step = on_step or (lambda name: None)
    per_precision = {}
    for precision, build_dir in builds.items():
        step(f"{precision}: prompts of {', '.join(map(str, prompt_tokens))} tokens")
        per_precision[precision] = _single_sequence(build_dir, prompt_tokens, new_tokens)
    llama_cpp = {"skipped": NOT_INSTALLED}
    if llama_cpp_available():
        step(f"llama.cpp Q8_0: prompts of {', '.join(map(str, prompt_tokens))} tokens")
        llama_cpp = llama_cpp_q8_rates(generator, prompt_tokens, new_tokens)
    step("int8: concurrent requests through the scheduler")
    engine = Engine(builds["int8"], max_batch=DEFAULT_MAX_BATCH, max_queue=max(concurrency))
    engine.start()
    try:
        throughput = {str(n): asyncio.run(_concurrent_rate(engine, n, new_tokens)) for n in concurrency}
        step("int8: the standard answer prompt")
        answer_prompt = asyncio.run(_answer_prompt_first_token(engine, _answer_messages(dev[0], docs)))
        step(f"int8: {DEFAULT_MAX_BATCH} dev questions answered at once")
        prompts = [_answer_messages(question, docs) for question in dev[:DEFAULT_MAX_BATCH]]
        answers = asyncio.run(_answers_per_second(engine, prompts))
    finally:
        engine.stop()
    step(f"answers to {len(dev)} dev questions at {' and '.join(builds)}")
    quality = _answer_quality(builds, dev, docs)
    report = _report(model, builds, per_precision, throughput, answer_prompt, answers, quality)
    return _compare_with_llama_cpp(report, llama_cpp)


def _single_sequence(build_dir: Path, prompt_tokens: tuple[int, ...], new_tokens: int) -> dict:
    runner = ModelRunner(build_dir, context_length=max(prompt_tokens) + new_tokens + 1)
    tokenizer = ChatTokenizer(build_dir)
    measured = {"execution_provider": runner.execution_provider}
    for tokens in prompt_tokens:
        prompt_ids = prompt_of(tokenizer, tokens)
        measured[str(tokens)] = {
            "time_to_first_token_s": round(time_to_first_token(runner, prompt_ids), 2),
            "decode_tokens_per_s": round(decode_rate(runner, prompt_ids, new_tokens), 2),
        }
    return measured


async def _concurrent_rate(engine: Engine, requests: int, new_tokens: int) -> dict:
    """Total generated tokens per second of `requests` submitted at once (greedy; a request may end
    at its end-of-sequence token before `new_tokens`)."""
    params = SamplingParams(temperature=0.0, max_tokens=new_tokens)
    started = time.perf_counter()
    completions = [engine.submit(CONCURRENT_MESSAGES, params) for _ in range(requests)]
    tokens = sum(await asyncio.gather(*(_token_count(completion) for completion in completions)))
    elapsed = time.perf_counter() - started
    return {"tokens": tokens, "seconds": round(elapsed, 2), "tokens_per_s": round(tokens / elapsed, 2)}


async def _token_count(completion) -> int:
    return sum([1 async for _ in completion.chunks()])


async def _answer_prompt_first_token(engine: Engine, messages: list[dict[str, str]]) -> dict:
    params = SamplingParams(temperature=0.0, max_tokens=1)

    async def first_token() -> tuple[float, int]:
        started = time.perf_counter()
        completion = engine.submit(messages, params)
        async for _ in completion.chunks():
            break
        return round(time.perf_counter() - started, 2), completion.prompt_tokens

    cold, prompt_tokens = await first_token()  # computes the system prompt's KV cache
    warm, _ = await first_token()
    return {"prompt_tokens": prompt_tokens, "cold_prefix_s": cold, "warm_prefix_s": warm}


async def _answers_per_second(engine: Engine, prompts: list[list[dict[str, str]]]) -> dict:
    """Answers per engine-second when a batch of distinct questions arrives at once, each from the
    standard prompt and up to KB_ANSWER_MAX_TOKENS long: the engine's capacity for sizing."""
    params = SamplingParams(temperature=0.0, max_tokens=settings.KB_ANSWER_MAX_TOKENS)
    started = time.perf_counter()
    completions = [engine.submit(messages, params) for messages in prompts]
    tokens = sum(await asyncio.gather(*(_token_count(completion) for completion in completions)))
    elapsed = time.perf_counter() - started
    return {
        "answers": len(prompts),
        "tokens": tokens,
        "seconds": round(elapsed, 2),
        "answers_per_s": round(len(prompts) / elapsed, 3),
    }


def _answerable(docs: Path, questions: Path) -> list[Question]:
    """English dev questions with gold answers and their document at hand, in file order."""
    return [
        question
        for question in load_questions(questions)
        if question.lang == "en" and question.answers and question.doc and (docs / question.doc).is_file()
    ]


def _answer_messages(question: Question, docs: Path) -> list[dict[str, str]]:
    """The answering pipeline's messages for a dev question: KB_ANSWER_SOURCES excerpts of its
    document the size the pipeline quotes, the one holding the evidence first (as retrieval would
    rank it), then others from the document's start."""
    text = (docs / question.doc).read_text()
    sizes = excerpt_sizes(settings.KB_ANSWER_SOURCE_CHARS, settings.KB_ANSWER_SOURCES)
    first = max(max(text.find(question.evidence or ""), 0) - sizes[0] // 4, 0)
    spans, position = [(first, first + sizes[0])], 0
    for size in sizes[1:]:
        if position < first + sizes[0] and position + size > first:  # would overlap the first
            position = first + sizes[0]
        spans.append((position, position + size))
        position += size
    excerpts = [
        Excerpt(number, question.doc, text[start:end])
        for number, (start, end) in enumerate(spans, 1)
        if text[start:end]
    ]
    return answer_messages(question.question, excerpts, language="en")


def _answer_quality(builds: dict[str, Path], dev: list[Question], docs: Path) -> dict:
    params = SamplingParams(temperature=0.0, max_tokens=settings.KB_ANSWER_MAX_TOKENS)
    answers = {}
    for precision, build_dir in builds.items():
        runner = ModelRunner(build_dir)
        tokenizer = ChatTokenizer(build_dir)
        answers[precision] = [
            "".join(
                chunk.text
                for chunk in generate(
                    runner,
                    tokenizer,
                    tokenizer.encode(tokenizer.render(_answer_messages(question, docs))),
                    params,
                )
            )
            for question in dev
        ]
    quality = {"questions": len(dev)}
    for precision, texts in answers.items():
        quality[f"{precision}_containing_a_gold_answer"] = sum(
            any(gold.casefold() in text.casefold() for gold in question.answers)
            for question, text in zip(dev, texts, strict=True)
        )
    if "fp32" in answers:
        quality["int8_identical_to_fp32"] = sum(
            int8 == fp32 for int8, fp32 in zip(answers["int8"], answers["fp32"], strict=True)
        )
    return quality


def _report(model, builds, per_precision, throughput, answer_prompt, answers, quality) -> dict:
    sizes = {precision: read_manifest(path)["total_size"] for precision, path in builds.items()}
    report = {
        "model": model,
        "machine": {"cpus": os.cpu_count(), **_cpu(), "onnxruntime": ort.__version__},
        "size_bytes": sizes,
        "single_sequence": per_precision,
        "concurrent_requests": {"max_batch": DEFAULT_MAX_BATCH, "int8": throughput},
        "answer_prompt_first_token": answer_prompt,
        "answers_at_once": answers,
        "answer_quality": quality,
    }
    measured = {"answer_prompt_first_token_at_most_s": answer_prompt["warm_prefix_s"]}
    one, eight = throughput.get("1"), throughput.get("8")
    if one and eight:
        measured["8_concurrent_over_1_at_least"] = round(eight["tokens_per_s"] / one["tokens_per_s"], 2)
    if "fp32" in builds:
        report["size_reduction_fp32_over_int8"] = round(sizes["fp32"] / sizes["int8"], 2)
        report["int8_decode_speedup"] = {
            tokens: round(
                per_precision["int8"][tokens]["decode_tokens_per_s"]
                / per_precision["fp32"][tokens]["decode_tokens_per_s"],
                2,
            )
            for tokens in per_precision["int8"]
            if tokens != "execution_provider"
        }
        measured["int8_decode_speedup_at_least"] = min(report["int8_decode_speedup"].values())
    report["targets"] = {
        name: {"wanted": TARGETS[name], "measured": value, "met": _met(name, value)}
        for name, value in measured.items()
    }
    return report


def _cpu() -> dict:
    """The CPU model and its VNNI flags (INT8 dot products), which the INT8 numbers depend on most."""
    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        return {}
    first_cpu: dict[str, str] = {}
    for line in info.splitlines():
        key, _, value = line.partition(":")
        first_cpu.setdefault(key.strip(), value.strip())
    flags = [flag for flag in first_cpu.get("flags", "").split() if "vnni" in flag]
    return {"cpu": first_cpu.get("model name", ""), "vnni": flags}


def _compare_with_llama_cpp(report: dict, llama_cpp: dict) -> dict:
    report["llama_cpp"] = llama_cpp
    if "skipped" in llama_cpp:
        return report
    int8 = report["single_sequence"]["int8"]
    ratios = {
        tokens: round(int8[tokens]["decode_tokens_per_s"] / llama_cpp[tokens]["decode_tokens_per_s"], 2)
        for tokens in int8
        if tokens in llama_cpp
    }
    report["int8_decode_over_llama_cpp_q8"] = ratios
    name = "int8_decode_over_llama_cpp_q8_at_least"
    value = min(ratios.values())
    report["targets"][name] = {"wanted": TARGETS[name], "measured": value, "met": _met(name, value)}
    return report


def _met(name: str, value: float) -> bool:
    return value <= TARGETS[name] if name.endswith("_at_most_s") else value >= TARGETS[name]
