"""Fingerprints: of a model's weights (for checkpoints) and of a cached model folder (for the cache).

A cached default model (the minilm-rt fine-tune, SmolLM2's float32 copy) gets a
manifest, ``prunescope-integrity.json``, with the SHA-256 of every file, written
when the folder is built. :func:`ensure_cached` checks it on every load; a
missing folder is built, a damaged one (any file changed, even at the same size)
is rebuilt, with progress and a message saying why. :func:`load_verified` hashes
in a second thread while the model loads (hashlib and the tensor reads both run
outside the GIL).

After a full check that matched, the files' identities (inode, size, modification
and change times) are remembered beside the folder (``.<name>.verified.json``);
a later load whose files all still have those identities skips the hashing. The
kernel sets a file's change time (ctime) on every write and it cannot be set
back, so any change made through the file system, even one that keeps the size
and restores the modification time, brings the full hash back. What that cannot
see is damage below the file system (a failing disk):
``python -m pruning prepare --verify`` hashes everything again.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, TypeVar

import torch

from ..errors import PruneScopeError
from ..paths import atomic_dir, build_lock, clear_orphans

MANIFEST = "prunescope-integrity.json"
NOT_BUILT = "it was not built yet"  # the reason for a first build (any other reason is a rebuild)
CHUNK = 4 << 20
SAMPLE = 4096  # elements per tensor that enter the weights fingerprint besides its sums
SETTLE_S = 2.0  # identities are remembered only for files unchanged this long (timestamps are coarse)
T = TypeVar("T")


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


def problem(folder: Path, full: bool = False) -> str | None:
    """Why ``folder`` cannot be trusted (None when every file matches its recorded hash).

    Unless ``full``, a folder whose files all keep the identities remembered after
    their last full check is trusted without hashing (see the module's docstring).
    """
    folder = Path(folder)
    if not folder.is_dir():
        return NOT_BUILT
    if not full and _identities_unchanged(folder):
        return None
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
    if extra:
        return f"it holds a file it was not built with ({extra[0]})"
    _remember_identities(folder)
    return None


def identities_file(folder: Path) -> Path:
    """Where the identities of a verified folder's files are remembered (beside it, never inside)."""
    folder = Path(folder)
    return folder.parent / f".{folder.name}.verified.json"


def forget_verified(folder: Path) -> None:
    """Make the next check of ``folder`` hash every file again."""
    identities_file(folder).unlink(missing_ok=True)


def _identities(folder: Path) -> dict[str, list[int]]:
    out = {}
    for p in sorted(folder.rglob("*")):
        if p.is_file():
            st = p.stat()
            out[str(p.relative_to(folder))] = [st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns]
    return out


def _identities_unchanged(folder: Path) -> bool:
    try:
        return json.loads(identities_file(folder).read_text()) == _identities(folder)
    except (OSError, ValueError):
        return False


def _remember_identities(folder: Path) -> None:
    """Remember the files' identities after a full check that matched, unless one changed in the last
    :data:`SETTLE_S` seconds (a write within the same timestamp tick would leave its ctime unchanged)."""
    try:
        ids = _identities(folder)
        if any(time.time_ns() - v[3] < SETTLE_S * 1e9 for v in ids.values()):
            return
        target = identities_file(folder)
        tmp = target.parent / f".{Path(folder).name}.tmp-{os.getpid()}-verified"
        tmp.write_text(json.dumps(ids))
        os.replace(tmp, target)
    except OSError:  # a read-only cache, a concurrent clean-up: the next load hashes again
        pass


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
                forget_verified(target)
                shutil.rmtree(target)
            clear_orphans(target)
            with atomic_dir(target) as tmp:
                build(tmp)
                record(tmp)
    except OSError as exc:
        raise PruneScopeError(f"could not write the cached {what} to {target.parent}: {exc}") from None
    return reason


def load_verified(
    target: Path, build: Callable[[Path], None], what: str, load: Callable[[Path], T], progress=None, complete=None
) -> tuple[T, str | None]:
    """``(load(target), why it was rebuilt or None)``, with the hash check beside the load.

    A folder with a manifest is hashed in a worker thread while ``load`` reads it;
    if every file matches, the loaded value is returned. Otherwise (missing,
    damaged, no manifest yet) the loaded value, if any, is dropped, and
    :func:`ensure_cached` builds or adopts the folder before it is loaded again.
    A load that fails on a folder whose hashes match raises its own error.
    """
    target = Path(target)
    if (target / MANIFEST).is_file():
        if progress is not None:
            progress(0, 1, f"loading the cached {what} and checking it against its recorded content hashes")
        with ThreadPoolExecutor(1, thread_name_prefix="prunescope-hash") as pool:
            check = pool.submit(problem, target)
            value, error = None, None
            try:
                value = load(target)
            except Exception as exc:  # noqa: BLE001 - a damaged file may fail to load; the check says why
                error = exc
            reason = check.result()
        if reason is None:
            if error is not None:
                raise error
            return value, None
        del value
    reason = ensure_cached(target, build, what, progress, complete)
    return load(target), reason
