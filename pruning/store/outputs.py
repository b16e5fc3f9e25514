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
import dataclasses
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from .. import __version__
from ..errors import PruneScopeError
from ..loading.data import _sibling_train_file
from ..paths import atomic_dir, atomic_file, build_lock, clear_orphans
from .checkpoint import Checkpoint
from .integrity import file_digest, weights_fingerprint


def _check_writable(folder: Path) -> None:
    """Create ``folder`` (and its parents) and prove a file can be written there."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise PruneScopeError(f"cannot write the output to {folder}: {reason}") from None


def output_path(text, flag: str = "--out") -> Path:
    """The output path a user typed, or one clear error when it cannot name an output of its own
    (empty, or ``.``/``..``/a root: a folder that holds the working directory or everything)."""
    raw = str(text if text is not None else "").strip()
    if not raw:
        raise PruneScopeError(f"{flag} is empty: give a file or folder name for the output")
    path = Path(raw).expanduser()
    if path.name in ("", ".", ".."):
        raise PruneScopeError(f"{flag} {raw!r} names no output of its own; give a new name such as {flag} out/run")
    return path


def _refuse_overlaps(paths: list[Path]) -> None:
    """Refuse outputs that would move the working directory or write one output inside another."""
    cwd = Path.cwd().resolve()
    resolved = [p.resolve() for p in paths]
    for path, real in zip(paths, resolved):
        if real == cwd or real in cwd.parents:
            raise PruneScopeError(
                f"the output {path} is the working directory or holds it; replacing it would move the folder you are in: "
                "choose a new name inside it, such as --out out/run"
            )
    for i, a in enumerate(resolved):
        for j, b in enumerate(resolved):
            if i != j and (a == b or b in a.parents):
                raise PruneScopeError(
                    f"the output {paths[i]} lies inside (or is) the output {paths[j]}: one would overwrite the other; choose another --out"
                )


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
        """A temporary folder that becomes ``target`` (default: the first target) in one rename
        (a rename that fails is a :class:`PruneScopeError`, never a silent success)."""
        with atomic_dir(Path(target or self.targets[0]), replace=self.overwrite, strict=True) as tmp:
            yield tmp

    @contextlib.contextmanager
    def file(self, target: Path):
        """A temporary file path that replaces ``target`` in one rename."""
        with atomic_file(Path(target)) as tmp:
            yield tmp


@contextlib.contextmanager
def claim(*targets, overwrite: bool = False, files: bool = False):
    """Hold ``targets`` (the first names the lock) for one run; see the module text.

    ``files``: the targets are files (a sweep's CSV and JSON), so an existing folder there is
    refused, as a run folder's target that is a file is refused otherwise."""
    paths = [output_path(t, "output") for t in targets]
    _refuse_overlaps(paths)
    for p in paths:
        if files and p.is_dir():
            raise PruneScopeError(f"the output {p} is a folder; give a file name such as {p / 'sweep.csv'}")
        if not files and p.exists() and not p.is_dir():
            raise PruneScopeError(f"the output {p} is a file; give a folder for the run")
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



def resume_checkpoint(path, header: dict, required: tuple[str, ...], overwrite: bool, warn, note=None):
    """The checkpoint of a sweep or sensitivity run, checked against ``header`` (see :mod:`pruning.store.checkpoint`)."""
    clear_orphans(path)  # the caller holds the output's claim, so no other run is rewriting this checkpoint
    ckpt = Checkpoint(path, header, required, warn, note)
    ckpt.begin(overwrite)
    return ckpt


# Command-line options that are proven not to change a sweep's or sensitivity run's numbers: every
# other option (and every new one) is recorded in the checkpoint header, so a resume with it changed
# is refused. ``GRID_OPTIONS`` choose which points are computed: a resumed row is checked against
# the grid instead (rows outside it are dropped), so a sweep can be extended.
NOT_NUMBERS = {
    "command": "the subcommand (the header's kind records it)",
    "func": "argparse plumbing",
    "out": "where the output goes",
    "overwrite": "whether an old output is replaced (it also starts afresh)",
    "offload_folder": "where offloaded weights wait on disk (the same weights come back)",
    "max_memory": "how much of the model sits in which memory (the same computation)",
    "trust_remote_code": "a permission; the model itself is recorded by name and weights",
    "memory_mb": "cached dense activations or full passes: the same numbers (tests/test_sensitivity.py)",
}
GRID_OPTIONS = {"methods", "granularities", "sparsities"}
# Request fields that name the point (checked per row) or that options already record verbatim.
GRID_FIELDS = {"method", "granularity", "sparsity", "params"}


def dataset_fingerprint(source) -> dict:
    """What identifies the data a run reads: a local file's (or folder's files') sha256 and size,
    else its name (an embedded dataset comes with the installed packages; a hub name is its own identity)."""
    if source is None:
        return {"name": None}
    path = Path(str(source)).expanduser()
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith("."))
    elif path.is_file():
        files = [path] + [f for f in [_sibling_train_file(path)] if f is not None]
    else:
        return {"name": str(source)}
    return {"name": str(source), "files": {f.name: {"sha256": file_digest(f), "size": f.stat().st_size} for f in files}}


def run_header(args, loaded, kind: str, request) -> dict:
    """What the numbers of a CLI sweep or sensitivity run depend on (the checkpoint header): every
    command-line option but :data:`NOT_NUMBERS` and :data:`GRID_OPTIONS`, every field of ``request``
    but :data:`GRID_FIELDS`, the resolved device and dtype, a fingerprint of the model's weights and
    of the dataset's content, and the project version."""
    options = {k: v for k, v in sorted(vars(args).items()) if k not in NOT_NUMBERS and k not in GRID_OPTIONS}
    fields = {f"request.{f.name}": getattr(request, f.name) for f in dataclasses.fields(request) if f.name not in GRID_FIELDS}
    return {
        "kind": kind,
        **options,
        **fields,
        "model_name": loaded.name,
        "weights": weights_fingerprint(loaded.model),
        "data": dataset_fingerprint(getattr(args, "dataset", None)),
        "device": str(getattr(loaded.placement, "device", "cpu")),  # resolved: "auto" may mean another device elsewhere
        "dtype": str(getattr(loaded.placement, "dtype", "float32")),
        "version": __version__,
    }
