"""Import every module of a package, so that files which register themselves (a criterion in
``pruning/criteria/``, an update in ``pruning/updates/``) need no line in a hand-kept list.

An entry that fails to import raises: a typo in one file must not silently remove it.
"""

from __future__ import annotations

import importlib
import pkgutil

_DONE: set[str] = set()


def import_all(package: str) -> None:
    """Import each module of ``package`` (once per process; modules starting with ``_`` are skipped)."""
    if package in _DONE:
        return
    pkg = importlib.import_module(package)
    for info in sorted(pkgutil.iter_modules(pkg.__path__), key=lambda i: i.name):
        if not info.name.startswith("_"):
            importlib.import_module(f"{package}.{info.name}")
    _DONE.add(package)
