"""The package's structure: plugins fail loudly, and the catalog is the one list of methods."""

from __future__ import annotations

import sys

import pytest

from pruning import catalog
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
    assert {"magnitude", "random", "wanda", "sparsegpt", "ria"} == set(catalog.all_methods(family="baseline"))
    assert {"mgpp", "gmp", "randomized", "sds"} == set(catalog.all_methods(family="seed"))


# ------------------------------------------------------------------ the import graph, read as text
# Written here (not imported from a tool outside the repository): every import statement of
# pruning/, app/ and pages/, at module level and inside functions alike (a circle hidden in a
# function body is still a circle in the design), kept when it names a module of those packages.
import ast  # noqa: E402
from pathlib import Path  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("pruning", "app", "pages")
CATALOG_PACKAGES = catalog.PACKAGES  # what pruning/catalog.py imports file by file


def _module_name(root: Path, path: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph(root: Path = ROOT, packages=PACKAGES) -> dict[str, set[str]]:
    """module -> the project modules it imports (``from pkg import submodule`` names the submodule)."""
    files = {_module_name(root, p): p for pkg in packages for p in sorted((root / pkg).rglob("*.py"))}

    def known(name: str) -> str | None:
        while name and name not in files:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = {m: set() for m in files}
    for mod, path in files.items():
        is_pkg = path.name == "__init__.py"
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                targets = {known(a.name) for a in node.names}
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = mod.split(".") if is_pkg else mod.split(".")[:-1]
                    base = ".".join(base[: len(base) - node.level + 1] + ([node.module] if node.module else []))
                else:
                    base = node.module or ""
                subs = {known(f"{base}.{a.name}") for a in node.names} - {None, known(base)}
                targets = subs if subs else {known(base)}
            else:
                continue
            graph[mod] |= targets - {None, mod}
    if "pruning.catalog" in graph:  # it imports every file of the plugin packages by name (plugins.import_all)
        graph["pruning.catalog"] |= {m for m in graph if m.rpartition(".")[0] in CATALOG_PACKAGES}
    return graph


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Each import circle as a path ``[a, b, ..., a]`` (one per strongly connected group)."""
    index, low, stack, on, groups = {}, {}, [], set(), []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = set()
            while True:
                w = stack.pop()
                on.discard(w)
                group.add(w)
                if w == v:
                    break
            if len(group) > 1:
                groups.append(group)

    for v in sorted(graph):
        if v not in index:
            visit(v)
    out = []
    for group in groups:  # one walk around the group, for the message
        start = min(group)
        path, seen = [start], {start}
        while True:
            nxt = sorted(w for w in graph[path[-1]] if w in group)
            back = [w for w in nxt if w == start]
            if back and len(path) > 1:
                out.append(path + [start])
                break
            fresh = [w for w in nxt if w not in seen]
            if not fresh:
                out.append(path + [nxt[0]])
                break
            path.append(fresh[0])
            seen.add(fresh[0])
    return out


def reachable(graph: dict[str, set[str]], start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        for w in graph.get(todo.pop(), ()):
            if w not in seen:
                seen.add(w)
                todo.append(w)
    return seen


def test_the_circle_check_finds_a_circle_through_a_function_body(tmp_path):
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "__init__.py").write_text("")
    (tmp_path / "pkg" / "a.py").write_text("from . import b\n")
    (tmp_path / "pkg" / "b.py").write_text("def f():\n    from .c import x\n")
    (tmp_path / "pkg" / "c.py").write_text("from pkg.a import y\n")
    (tmp_path / "pkg" / "d.py").write_text("from pkg import a\n")
    graph = import_graph(tmp_path, ("pkg",))
    assert graph["pkg.d"] == {"pkg.a"} and graph["pkg.b"] == {"pkg.c"}
    assert circles(graph) == [["pkg.a", "pkg.b", "pkg.c", "pkg.a"]]


def test_no_import_circle_in_pruning_app_or_pages():
    found = circles(import_graph())
    assert not found, "import circles:\n" + "\n".join(" -> ".join(c) for c in found)


def test_pruning_imports_nothing_from_streamlit():
    offenders = []
    for path in sorted((ROOT / "pruning").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            offenders += [f"{path.relative_to(ROOT)}:{node.lineno}" for n in names if n.split(".")[0] == "streamlit"]
    assert not offenders, offenders


def test_the_core_types_and_the_registry_import_no_orchestration():
    """core.py (LoadedModel, PruneContext) imports nothing of the project, registry.py only core and
    errors; so nothing that runs a method can be pulled in by describing one."""
    graph = import_graph()
    assert graph["pruning.core"] == set()
    assert graph["pruning.registry"] <= {"pruning.core", "pruning.errors"}
    # masks reads the allocation rules through their registry (types only: it imports no rule file)
    allowed = {"pruning.core", "pruning.errors", "pruning.masks", "pruning.maskmath", "pruning.allocations.registry",
               "pruning.registry", "pruning.plugins"}
    assert reachable(graph, "pruning.result") <= allowed | {m for m in graph if m.startswith("pruning.loading.")}


def test_loading_a_model_does_not_import_the_fine_tuner():
    graph = import_graph()
    pulled = reachable(graph, "pruning.loading.models") | reachable(graph, "pruning.loading")
    assert not {m for m in pulled if m.startswith(("pruning.embedded", "pruning.procedures", "pruning.catalog"))}, pulled


def undefined_names(paths) -> list[str]:
    """Every name used but never bound, as pyflakes reports it (file:line name). A name like this
    only fails when its line runs, so a path the tests never take (a first-time build) hides it."""
    from pyflakes.api import checkPath
    from pyflakes.messages import UndefinedExport, UndefinedLocal, UndefinedName
    from pyflakes.reporter import Reporter

    class Collect(Reporter):
        def __init__(self):
            super().__init__(None, None)
            self.found = []

        def flake(self, message):
            if isinstance(message, (UndefinedName, UndefinedLocal, UndefinedExport)):
                self.found.append(f"{message.filename}:{message.lineno} {message.message_args[0]}")

        def syntaxError(self, filename, msg, lineno, offset, text):
            self.found.append(f"{filename}:{lineno} syntax error: {msg}")

        def unexpectedError(self, filename, msg):
            self.found.append(f"{filename}: {msg}")

    reporter = Collect()
    for path in paths:
        checkPath(str(path), reporter)
    return reporter.found


def test_the_undefined_name_check_finds_one_in_a_function_body(tmp_path):
    (tmp_path / "m.py").write_text("import json\n\ndef f(x):\n    return json.dumps(x) + fingerprint(x)\n")
    assert undefined_names([tmp_path / "m.py"]) == [f"{tmp_path / 'm.py'}:4 fingerprint"]


def test_no_undefined_name_in_the_project():
    paths = [p for d in ("pruning", "app", "pages", "bench", "scripts", "tests") for p in sorted((ROOT / d).rglob("*.py"))]
    assert len(paths) > 100
    found = undefined_names(paths)
    assert not found, "names used but never defined:\n" + "\n".join(found)
