"""manifest.json of a trained entailment model: what it learned from and under which licences, how it
was trained, how well it scores on the dev sets, and the files that make it up."""

import importlib.metadata
import json
from collections import Counter
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path

from inference.factcheck.export import QUANTIZATION
from inference.factcheck.finetune import TrainingSettings
from inference.factcheck.pairs import NLI_TRAIN_FILES, LabelledPair
from inference.factcheck.sources import (
    ALLOWED_SOURCES,
    BASE_MODEL,
    BASE_MODEL_LICENCE,
    BASE_MODEL_PACKAGE,
    EXCLUDED_SOURCES,
)
from inference.model_store import sha256_of

FORMAT = 1
LABEL_MAPPING = (
    "3-way rows: entailment → supported, neutral and contradiction → not supported; "
    "2-way rows: entailment → supported, not_entailment → not supported"
)
# Library versions worth knowing when a rerun does not reproduce the same weights.
RECORDED_PACKAGES = ("torch", "transformers", "tokenizers", "onnx", "onnxruntime-gpu", BASE_MODEL_PACKAGE)


def file_entry(path: Path) -> dict:
    return {"file": path.name, "bytes": path.stat().st_size, "sha256": sha256_of(path)}


def training_data(train_pairs: list[LabelledPair]) -> dict:
    """The files and, per source, its licence and how many supported / unsupported pairs were used."""
    supported = Counter(pair.source for pair in train_pairs if pair.supported)
    unsupported = Counter(pair.source for pair in train_pairs if not pair.supported)
    return {
        "directory": "shared/nli (see its README for repositories and commits)",
        "files": list(NLI_TRAIN_FILES),
        "label_mapping": LABEL_MAPPING,
        "sources": {
            source: {"licence": licence, "supported": supported[source], "not_supported": unsupported[source]}
            for source, licence in ALLOWED_SOURCES.items()
        },
    }


def build_manifest(
    *,
    settings: TrainingSettings,
    threads: int | None,
    train_pairs: list[LabelledPair],
    hypothesis_format: str,
    threshold: float,
    dev_scores: dict,
    int8_path: Path,
    fp32_path: Path,
    tokenizer_paths: list[Path],
    seconds: dict[str, float],
    command: str,
) -> dict:
    return {
        "format": FORMAT,
        "task": "binary entailment: does the premise (passage) support the hypothesis (claim)?",
        "architecture": "MiniLM cross-encoder with an alignment head (inference/factcheck/cross_encoder.py)",
        "inputs": "[CLS] premise [SEP] hypothesis [SEP]; the premise is cut when the pair is too long",
        "output": "logits, one per pair; sigmoid(logit) = P(supported)",
        "base_model": {
            "name": BASE_MODEL,
            "package": f"{BASE_MODEL_PACKAGE}=={importlib.metadata.version(BASE_MODEL_PACKAGE)}",
            "licence": BASE_MODEL_LICENCE,
        },
        "training_data": training_data(train_pairs),
        "excluded_sources": EXCLUDED_SOURCES,
        "settings": asdict(settings) | {"threads": threads},
        "hypothesis_format": hypothesis_format,
        "threshold": threshold,
        "threshold_chosen_on": f"factcheck_dev ({hypothesis_format}), INT8: the most accurate threshold",
        "dev_scores": dev_scores,
        "onnx": file_entry(int8_path) | {"quantization": QUANTIZATION},
        "onnx_fp32_not_shipped": file_entry(fp32_path),
        "tokenizer_files": [file_entry(path) for path in tokenizer_paths],
        "seconds": {stage: round(value) for stage, value in seconds.items()},
        "versions": {package: importlib.metadata.version(package) for package in RECORDED_PACKAGES},
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": command,
    }


def write_manifest(manifest: dict, path: Path) -> None:
    path.write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n")
