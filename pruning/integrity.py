"""Fingerprints: of a model's weights (for checkpoints) and of a cached model folder (for the cache).

A cached default model (the minilm-rt fine-tune, SmolLM2's float32 copy) gets a
manifest, ``prunescope-integrity.json``, with the SHA-256 of every file, written
when the folder is built. :func:`ensure_cached` checks it on every load; a
missing folder is built, a damaged one (any file changed, even at the same size)
is rebuilt, with progress and a message saying why.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Callable

import torch

from .errors import PruneScopeError
from .paths import atomic_dir, build_lock, clear_orphans

MANIFEST = "prunescope-integrity.json"
NOT_BUILT = "it was not built yet"  # the reason for a first build (any other reason is a rebuild)
CHUNK = 4 << 20
SAMPLE = 4096  # elements per tensor that enter the weights fingerprint besides its sums


def weights_fingerprint(model: torch.nn.Module) -> str:
    """A short digest of every parameter: name, shape, sum, sum of squares and a fixed strided sample.

    Any realistic change of the weights (another fine-tune, a damaged file, a
    different model of the same shape) changes it; it costs one pass of sums.
    """
    h = hashlib.sha256()
    for name, p in model.state_dict().items():
        t = p.detach()
        h.update(f"{name}:{tuple(t.shape)}:{t.dtype}".encode())
        if t.numel() == 0:
            continue
        flat = t.reshape(-1)
        if t.is_floating_point():
            d = flat.double()
            h.update(f"{float(d.sum()):.12e}:{float((d * d).sum()):.12e}".encode())
        step = max(1, flat.numel() // SAMPLE)
        h.update(flat[::step].contiguous().cpu().numpy().tobytes())
    return h.hexdigest()[:16]


def file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()


def folder_digests(folder: Path) -> dict[str, str]:
    """SHA-256 of every file under ``folder`` except the manifest, by relative path."""
    folder = Path(folder)
    return {
        str(p.relative_to(folder)): file_digest(p) for p in sorted(folder.rglob("*")) if p.is_file() and p.name != MANIFEST
    }


def record(folder: Path) -> dict[str, str]:
    """Write the manifest of ``folder`` (call it when the folder is complete)."""
    digests = folder_digests(folder)
    (Path(folder) / MANIFEST).write_text(json.dumps({"sha256": digests}, indent=1))
    return digests


def problem(folder: Path) -> str | None:
    """Why ``folder`` cannot be trusted (None when every file matches its recorded hash)."""
    folder = Path(folder)
    if not folder.is_dir():
        return NOT_BUILT
    try:
        recorded = json.loads((folder / MANIFEST).read_text())["sha256"]
    except (OSError, ValueError, KeyError, TypeError):
        return "its record of content hashes is missing or unreadable"
    actual = folder_digests(folder)
    for name, digest in recorded.items():
        if name not in actual:
            return f"its file {name} is missing"
        if actual[name] != digest:
            return f"its file {name} does not match the content hash recorded when it was built (damaged)"
    extra = sorted(set(actual) - set(recorded))
    return f"it holds a file it was not built with ({extra[0]})" if extra else None


def ensure_cached(target: Path, build: Callable[[Path], None], what: str, progress=None, complete=None) -> str | None:
    """Make sure ``target`` is a whole, verified folder, building it with ``build(tmp_folder)`` if not.

    Returns None when the cached folder was fine, else why it was (re)built. The
    build runs under a lock, in a temporary sibling renamed into place. A folder
    that ``complete(folder)`` accepts but that has no manifest yet (built by a
    PruneScope before manifests existed) gets one now instead of a rebuild.
    """
    target = Path(target)
    if progress is not None and target.is_dir():
        progress(0, 1, f"checking the cached {what} against its recorded content hashes")
    reason = problem(target)
    if reason is None:
        return None
    try:
        with build_lock(target):
            reason = problem(target)  # another process may have finished it meanwhile
            if reason is None:
                return None
            if complete is not None and not (target / MANIFEST).exists() and complete(target):
                record(target)
                return None
            if target.exists():
                if progress is not None:
                    progress(0, 1, f"the cached {what} is rebuilt: {reason}")
                shutil.rmtree(target)
            clear_orphans(target)
            with atomic_dir(target) as tmp:
                build(tmp)
                record(tmp)
    except OSError as exc:
        raise PruneScopeError(f"could not write the cached {what} to {target.parent}: {exc}") from None
    return reason
