"""Measure the built generators on this machine: size, time to first token, decode speed. Prints JSON.

    python -m inference.bench [NAME/PRECISION ...] [--prompt-tokens 600] [--new-tokens 64] [--repeats 2]
                              [--streams 1 4 8]

Time to first token is prefill of the whole prompt plus picking the first token; it is measured again
with all but the last `--uncached-tokens` of the prompt taken from a prefix cache, the case of a fixed
system prompt. Decode speed is greedy single-sequence decoding that ignores end-of-sequence, so every
run decodes the same number of tokens. Throughput is the same decoding for `--streams` sequences
decoded together in one batch, all tokens counted. A benchmark, not a test: numbers vary with machine
load.
"""

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Sequence

import numpy as np
import onnxruntime as ort

from inference.catalog import GENERATORS, PRECISIONS, generator_named
from inference.chat import ChatTokenizer
from inference.model_store import build_path, models_dir, read_manifest
from inference.runner import ModelRunner

# Stands in for retrieved passages: plain documentation prose, repeated to the prompt length wanted.
FILLER = (
    "The knowledge base keeps every document version with its source, owner and access rules. "
    "When a question arrives, the retriever finds the passages that matter, and the generator "
    "writes a short answer that cites them. Administrators can see who asked what and when. "
)

DEFAULT_TARGETS = (
    "qwen2.5-coder-0.5b-instruct/int8",
    "qwen2.5-coder-0.5b-instruct/fp32",
    "smollm2-135m-instruct/int8",
)


def prompt_of(tokenizer: ChatTokenizer, tokens: int) -> list[int]:
    """Exactly `tokens` token ids of filler prose."""
    filler_ids = tokenizer.encode(FILLER)
    return (filler_ids * (tokens // len(filler_ids) + 1))[:tokens]


def time_to_first_token(runner: ModelRunner, prompt_ids: list[int], prefix=None) -> float:
    started = time.perf_counter()
    sequence = runner.new_sequence(prefix)
    int(np.argmax(runner.forward(sequence, prompt_ids[sequence.length :])))
    return time.perf_counter() - started


def decode_rate(runner: ModelRunner, prompt_ids: list[int], new_tokens: int) -> float:
    """Tokens per second of greedy decoding after the prompt, prefill excluded."""
    sequence = runner.new_sequence()
    token_id = int(np.argmax(runner.forward(sequence, prompt_ids)))
    started = time.perf_counter()
    for _ in range(new_tokens):
        token_id = int(np.argmax(runner.forward(sequence, [token_id])))
    return new_tokens / (time.perf_counter() - started)


def batched_decode_rate(runner: ModelRunner, prompt_ids: list[int], streams: int, new_tokens: int) -> float:
    """Total tokens per second of greedy decoding `streams` sequences in one batch, prefills excluded."""
    batch = runner.new_batch(streams)
    token_ids = [int(np.argmax(runner.forward(batch.add(), prompt_ids))) for _ in range(streams)]
    started = time.perf_counter()
    for _ in range(new_tokens):
        token_ids = [int(token_id) for token_id in np.argmax(runner.decode(batch, token_ids), axis=1)]
    return streams * new_tokens / (time.perf_counter() - started)


def bench_build(name: str, precision: str, args: argparse.Namespace) -> dict:
    generator = generator_named(name)
    build_dir = build_path(models_dir(), name, generator.version, precision)
    started = time.perf_counter()
    runner = ModelRunner(build_dir, context_length=args.prompt_tokens + args.new_tokens + 1)
    load_seconds = time.perf_counter() - started
    tokenizer = ChatTokenizer(build_dir)
    prompt_ids = prompt_of(tokenizer, args.prompt_tokens)
    prefix = runner.prefix_cache(prompt_ids[: args.prompt_tokens - args.uncached_tokens])
    ttft = [time_to_first_token(runner, prompt_ids) for _ in range(args.repeats)]
    ttft_prefix = [time_to_first_token(runner, prompt_ids, prefix) for _ in range(args.repeats)]
    rates = [decode_rate(runner, prompt_ids, args.new_tokens) for _ in range(args.repeats)]
    throughput = {
        streams: [
            batched_decode_rate(runner, prompt_ids, streams, args.new_tokens) for _ in range(args.repeats)
        ]
        for streams in args.streams
    }
    return {
        "model": name,
        "precision": precision,
        "size_bytes": read_manifest(build_dir)["total_size"],
        "execution_provider": runner.execution_provider,
        "load_seconds": round(load_seconds, 2),
        "prompt_tokens": args.prompt_tokens,
        "time_to_first_token_s": _summary(ttft),
        f"time_to_first_token_with_cached_prefix_s ({args.uncached_tokens} tokens uncached)": _summary(
            ttft_prefix
        ),
        "decode_tokens": args.new_tokens,
        "decode_tokens_per_s": _summary(rates),
        "batched_decode_total_tokens_per_s": {
            str(streams): _summary(samples) for streams, samples in throughput.items()
        },
    }


def _summary(samples: list[float]) -> dict:
    return {
        "median": round(statistics.median(samples), 3),
        "samples": [round(sample, 3) for sample in samples],
    }


def size_reductions(results: list[dict]) -> dict[str, float]:
    """FP32 size over INT8 size, per model measured at both precisions."""
    sizes = {(result["model"], result["precision"]): result["size_bytes"] for result in results}
    return {
        name: round(sizes[(name, "fp32")] / sizes[(name, "int8")], 2)
        for name in GENERATORS
        if (name, "fp32") in sizes and (name, "int8") in sizes
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m inference.bench", description=__doc__.split("\n")[0])
    parser.add_argument("targets", nargs="*", metavar="NAME/PRECISION", default=list(DEFAULT_TARGETS))
    parser.add_argument("--prompt-tokens", type=int, default=600)
    parser.add_argument("--uncached-tokens", type=int, default=100)
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--streams", type=int, nargs="+", default=[1, 8], help="batch sizes to measure")
    args = parser.parse_args(argv)
    results = []
    for target in args.targets:
        name, _, precision = target.partition("/")
        if precision not in PRECISIONS:
            parser.error(f"{target}: expected NAME/PRECISION with PRECISION one of {', '.join(PRECISIONS)}")
        results.append(bench_build(name, precision, args))
        print(json.dumps(results[-1]), file=sys.stderr)
    report = {
        "machine": {"cpus": os.cpu_count(), "onnxruntime": ort.__version__},
        "size_reduction_fp32_over_int8": size_reductions(results),
        "results": results,
    }
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
