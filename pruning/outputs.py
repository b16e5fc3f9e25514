"""Exclusive, atomic outputs for ``prune``, ``sweep`` and ``sensitivity``.

:func:`claim` is entered before any work (before the model is loaded):

1. the output's folder must be creatable and writable, else one clear error;
2. a lock beside the output (``.<name>.lock``, holding the pid) is taken without
   waiting, so a second run on the same output fails at once with one line;
3. leftovers of a killed run (``.<name>.tmp-<pid>-*`` siblings) are removed;
4. an existing non-empty output is refused unless ``overwrite`` is given.

The result is then built in a temporary sibling and moved into place in one
rename (:meth:`Claim.folder`, :meth:`Claim.file`), so a reader finds either no
output or a whole one, never one run's masks beside another run's report.
"""

from __future__ import annotations

import contextlib
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from .errors import PruneScopeError
from .paths import atomic_dir, atomic_file, build_lock, clear_orphans


def _check_writable(folder: Path) -> None:
    """Create ``folder`` (and its parents) and prove a file can be written there."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise PruneScopeError(f"cannot write the output to {folder}: {reason}") from None


def _occupied(path: Path) -> bool:
    if path.is_dir():
        return any(path.iterdir())
    return path.exists()


@dataclass
class Claim:
    """An output this process holds: its paths, and whether an old one is replaced."""

    targets: list[Path]
    overwrite: bool
    cleaned: list[Path] = field(default_factory=list)

    @contextlib.contextmanager
    def folder(self, target: Path | None = None):
        """A temporary folder that becomes ``target`` (default: the first target) in one rename."""
        with atomic_dir(Path(target or self.targets[0]), replace=self.overwrite) as tmp:
            yield tmp

    @contextlib.contextmanager
    def file(self, target: Path):
        """A temporary file path that replaces ``target`` in one rename."""
        with atomic_file(Path(target)) as tmp:
            yield tmp


@contextlib.contextmanager
def claim(*targets, overwrite: bool = False):
    """Hold ``targets`` (the first names the lock) for one run; see the module text."""
    paths = [Path(t).expanduser() for t in targets]
    main = paths[0]
    for folder in dict.fromkeys(p.parent for p in paths):
        _check_writable(folder)
    with build_lock(main, wait=False):
        cleaned = [p for t in paths for p in clear_orphans(t)]
        busy = [p for p in paths if _occupied(p)]
        if busy and not overwrite:
            raise PruneScopeError(
                f"{busy[0]} already exists and is not empty; pass --overwrite to replace it, or choose another --out"
            )
        yield Claim(paths, overwrite, cleaned)



def resume_checkpoint(path, header: dict, required: tuple[str, ...], overwrite: bool, warn):
    """The checkpoint of a sweep or sensitivity run, checked against ``header`` (see :mod:`pruning.checkpoint`)."""
    from .checkpoint import Checkpoint

    clear_orphans(path)  # the caller holds the output's claim, so no other run is rewriting this checkpoint
    ckpt = Checkpoint(path, header, required, warn)
    ckpt.begin(overwrite)
    return ckpt


def run_header(args, loaded, kind: str, **extra) -> dict:
    """What the numbers of a CLI sweep or sensitivity run depend on (the checkpoint header)."""
    from . import __version__
    from .integrity import weights_fingerprint

    return {
        "kind": kind,
        "model": loaded.name,
        "weights": weights_fingerprint(loaded.model),
        "dataset": getattr(args, "dataset", None),
        "text_column": getattr(args, "text_column", None),
        "label_column": getattr(args, "label_column", None),
        "eval_size": args.eval_size,
        "seed": args.seed,
        "calibration": args.calib,
        "calib_len": args.calib_len,
        "device": getattr(loaded.placement, "device", "cpu"),  # resolved: "auto" may mean another device elsewhere
        "dtype": getattr(loaded.placement, "dtype", "float32"),
        "version": __version__,
        **extra,
    }
