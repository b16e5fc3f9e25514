"""The package's structure: plugins fail loudly, and the catalog is the one list of methods."""

from __future__ import annotations

import sys

import pytest

from pruning.plugins import import_all


def _package(root, name: str, files: dict[str, str]) -> None:
    pkg = root / name
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    for file, text in files.items():
        (pkg / file).write_text(text)


def test_a_plugin_file_that_fails_to_import_makes_import_all_raise(tmp_path, monkeypatch):
    """A typo in one procedure file must fail loudly, never silently remove the methods it registers."""
    _package(tmp_path, "s20_plugins_typo", {
        "a_good.py": "LOADED = True\n",
        "b_typo.py": "from pruning.registry import registr  # the typo\n",
    })
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ImportError, match="registr"):
        import_all("s20_plugins_typo")
    assert sys.modules["s20_plugins_typo.a_good"].LOADED  # the files before it were imported
    for name in [m for m in sys.modules if m.startswith("s20_plugins_typo")]:
        monkeypatch.delitem(sys.modules, name)


def test_a_missing_dependency_of_a_plugin_is_not_swallowed(tmp_path, monkeypatch):
    _package(tmp_path, "s20_plugins_missing", {"only.py": "import s20_no_such_module_anywhere\n"})
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ModuleNotFoundError, match="s20_no_such_module_anywhere"):
        import_all("s20_plugins_missing")
    for name in [m for m in sys.modules if m.startswith("s20_plugins_missing")]:
        monkeypatch.delitem(sys.modules, name)


def test_the_catalog_lists_the_methods_of_every_criterion_and_procedure_file():
    """Every criterion and procedure file registers itself when the catalog imports it (no hand-kept
    list): the five criteria and the four seed procedures, each under its own name."""
    from pruning import catalog

    assert {"magnitude", "random", "wanda", "sparsegpt", "ria"} == set(catalog.all_methods(family="baseline"))
    assert {"mgpp", "gmp", "randomized", "sds"} == set(catalog.all_methods(family="seed"))
