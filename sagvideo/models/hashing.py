"""Which weights ran: SHA-256 digests of weight files, cached so a multi-GB file is read once.

A run report names every model with `sha256_16`, the first 16 hex digits of SHA-256 of the
weight file (for a folder or cached hub id: of the weight files diffusers/transformers load
from it, combined). For a single file this is the prefix `sha256sum FILE` prints, so a user
can check it by hand.

Full digests are cached in `$XDG_CACHE_HOME/sagvideo/hashes.json` (default
`~/.cache/sagvideo/hashes.json`), keyed by resolved path and valid while the file's size and
mtime_ns are unchanged. A broken cache file is ignored and rewritten.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path
from typing import Iterable

from ..files import atomic_write_bytes

RANDOM_WEIGHTS = "random weights"
DIGEST_CHARS = 16
_CHUNK = 8 * 2**20
# The non-variant weight names diffusers and transformers load (sharded: "<stem>-00001-of-00003").
_WEIGHT_STEMS = ("diffusion_pytorch_model", "model", "pytorch_model")
_SHARD = re.compile(r"-\d{5}-of-\d{5}$")


def cache_file() -> Path:
    """Where digests are cached: $XDG_CACHE_HOME/sagvideo/hashes.json (default ~/.cache/...)."""
    root = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(root) / "sagvideo" / "hashes.json"


def _read_cache(path: Path) -> dict[str, dict]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return data["files"] if isinstance(data.get("files"), dict) else {}
    except (OSError, ValueError, AttributeError, KeyError, TypeError):
        return {}  # missing or broken: start afresh


def _write_cache(path: Path, entries: dict[str, dict]) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        merged = {**_read_cache(path), **entries}  # keep what other processes added meanwhile
        atomic_write_bytes(path, json.dumps({"version": 1, "files": merged}, indent=1).encode())
    except OSError:
        pass  # a read-only home only costs re-hashing next time


def file_sha256(path: str | os.PathLike) -> str:
    """Full SHA-256 hex digest (64 chars) of a file, from the cache when size and mtime_ns match."""
    resolved = Path(path).expanduser().resolve()
    stat = resolved.stat()
    key, cache = str(resolved), cache_file()
    entry = _read_cache(cache).get(key)
    if isinstance(entry, dict) and entry.get("size") == stat.st_size and entry.get("mtime_ns") == stat.st_mtime_ns:
        digest = entry.get("sha256")
        if isinstance(digest, str) and len(digest) == 64:
            return digest
    sha = hashlib.sha256()
    with open(resolved, "rb") as f:
        while block := f.read(_CHUNK):
            sha.update(block)
    digest = sha.hexdigest()
    _write_cache(cache, {key: {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "sha256": digest}})
    return digest


def combined_sha256_16(files: Iterable[tuple[str, Path]]) -> str:
    """First 16 hex digits of SHA-256 over "name digest" lines of (name, file) pairs sorted by name.

    One file is its own digest's prefix (what `sha256sum` prints); several are combined so that
    renaming, adding or changing any of them changes the result.
    """
    pairs = sorted(files)
    if len(pairs) == 1:
        return file_sha256(pairs[0][1])[:DIGEST_CHARS]
    lines = "".join(f"{name} {file_sha256(path)}\n" for name, path in pairs)
    return hashlib.sha256(lines.encode()).hexdigest()[:DIGEST_CHARS]


def loaded_weight_files(folder: Path) -> list[Path]:
    """The weight files a diffusers/transformers `from_pretrained` reads from `folder` (no variants).

    `.safetensors` when there are any, else `.bin`; fp16 and other variants are left out since
    sagvideo loads without `variant`.
    """
    for suffix in (".safetensors", ".bin"):
        found = sorted(p for p in folder.glob(f"*{suffix}")
                       if p.is_file() and _SHARD.sub("", p.name[: -len(suffix)]) in _WEIGHT_STEMS)
        if found:
            return found
    return []


def folder_sha256_16(root: Path, subfolders: Iterable[str] = ("",)) -> str | None:
    """Combined digest of the weight files in `root/<sub>` for each sub (None when there are none)."""
    files = [(str(p.relative_to(root)), p) for sub in subfolders for p in loaded_weight_files(root / sub)]
    return combined_sha256_16(files) if files else None


def hub_snapshot(repo_id: str) -> Path | None:
    """The local snapshot folder of a cached hub repo (None when it is not cached)."""
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(repo_id, local_files_only=True))
    except Exception:  # not cached, or not a repo id: nothing to hash
        return None
