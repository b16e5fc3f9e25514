"""Which folders a path typed into the browser may point into.

The app's server may be reached by people who should not read its files, so a
dataset, model or runs path typed into the browser must lie under an allowed
root: the working directory, the runs directory, the PruneScope cache, or one
of the folders in ``$PRUNESCOPE_DATA_DIRS`` (separated by ``os.pathsep``).
The CLI is not limited: whoever runs it already has the files.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import PruneScopeError
from ..paths import cache_dir
from .runs import runs_dir

DATA_DIRS_ENV = "PRUNESCOPE_DATA_DIRS"


def allowed_roots() -> list[Path]:
    extra = [Path(p).expanduser() for p in os.environ.get(DATA_DIRS_ENV, "").split(os.pathsep) if p.strip()]
    return [Path(p).resolve() for p in [Path.cwd(), runs_dir(), cache_dir(), *extra]]


def looks_like_path(text: str) -> bool:
    """Whether ``text`` names a local file or folder (a hub name such as ``glue/sst2`` does not)."""
    text = text.strip()
    return text.startswith((".", "/", "~", "\\")) or os.path.exists(os.path.expanduser(text))


def check_allowed(text: str, what: str) -> Path:
    """``text`` resolved, if it lies under an allowed root; otherwise a message that names only the roots."""
    path = Path(text.strip()).expanduser().resolve()
    roots = allowed_roots()
    if any(path == root or root in path.parents for root in roots):
        return path
    raise PruneScopeError(
        f"the {what} path is outside the folders this app may read ({', '.join(str(r) for r in roots)}); "
        f"put the files there, or list their folder in {DATA_DIRS_ENV} when you start the app"
    )
