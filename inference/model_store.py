"""Where builds live and how to tell a complete build from a broken one.

A build is a directory `<models_dir>/<name>/<version>/<precision>/` holding the ONNX model, its
tokenizer files and `manifest.json`. The manifest is written last and the directory appears by an
atomic rename, so a directory with a manifest whose files all match it is a finished build.
"""

import hashlib
import json
import os
from pathlib import Path

MANIFEST = "manifest.json"
MANIFEST_FORMAT = 1

# Files are hashed in chunks so that verifying a 2.5 GB build does not need 2.5 GB of memory.
HASH_CHUNK_BYTES = 8 * 1024 * 1024


class InvalidBuild(RuntimeError):
    """A build directory that is missing, unfinished or corrupt; the message names the file and the fix."""


def models_dir() -> Path:
    """The cache of builds: $KB_MODELS_DIR, else ~/.cache/kb/models so that fresh clones reuse builds."""
    configured = os.environ.get("KB_MODELS_DIR")
    return Path(configured).expanduser() if configured else Path.home() / ".cache" / "kb" / "models"


def build_path(root: Path, name: str, version: str, precision: str) -> Path:
    return root / name / version / precision


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        while chunk := stream.read(HASH_CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def read_manifest(build_dir: Path, *, full: bool = False) -> dict:
    """The manifest of a finished build, after checking every file it lists.

    The cheap check (the default) compares sizes, which catches truncated and missing files; `full`
    also recomputes every sha256. Raises InvalidBuild naming the first file that does not match.
    """
    manifest_path = build_dir / MANIFEST
    try:
        manifest = json.loads(manifest_path.read_text())
    except FileNotFoundError:
        raise InvalidBuild(_broken(build_dir, f"{manifest_path} is missing")) from None
    except (OSError, ValueError) as error:
        raise InvalidBuild(_broken(build_dir, f"{manifest_path} is unreadable: {error}")) from None
    if manifest.get("format") != MANIFEST_FORMAT:
        raise InvalidBuild(_broken(build_dir, f"{manifest_path} has format {manifest.get('format')!r}"))
    for entry in manifest["files"]:
        path = build_dir / entry["path"]
        if not path.is_file():
            raise InvalidBuild(_broken(build_dir, f"{path} is missing"))
        if path.stat().st_size != entry["size"]:
            raise InvalidBuild(
                _broken(build_dir, f"{path} has {path.stat().st_size} bytes, not {entry['size']}")
            )
        if full and sha256_of(path) != entry["sha256"]:
            raise InvalidBuild(_broken(build_dir, f"{path} does not match its sha256"))
    return manifest


def _broken(build_dir: Path, reason: str) -> str:
    model = build_dir.parent.parent.name
    return (
        f"model build {build_dir} is unusable: {reason}; rebuild it with `python -m inference.build {model}`"
    )
