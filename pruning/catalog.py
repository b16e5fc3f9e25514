"""Every pruning method, allocation and update there is: the one list the CLI, the app and the tests read.

Importing this module imports every file of ``pruning/criteria/``, ``pruning/procedures/``,
``pruning/allocations/`` and ``pruning/updates/`` (:func:`pruning.plugins.import_all`: no
hand-kept list), and each file registers what it defines. A file that fails to import raises
here: a typo in one procedure must not silently remove it.
"""

from __future__ import annotations

from .plugins import import_all
from .registry import Method, lookup, registered

PACKAGES = ("pruning.criteria", "pruning.procedures", "pruning.allocations", "pruning.updates")


def load_all() -> None:
    """Import every plugin file (once per process)."""
    for package in PACKAGES:
        import_all(package)


def all_methods(family: str | None = None) -> dict[str, Method]:
    """Every registered method by name (``family``: only "baseline" or only "seed" ones)."""
    load_all()
    return {n: m for n, m in registered().items() if family is None or m.family == family}


def get_method(name: str) -> Method:
    """The method ``name``, or the one that gives ``name`` as an alias (SparseGPT for ``obs``); a clear error otherwise."""
    return lookup(all_methods(), name)
