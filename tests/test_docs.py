"""The docs: generated figures match bench/results, every link lands, the README stays short."""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

import report  # noqa: E402  (bench/report.py)

DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\]\(([^)\s]+)\)|<img src=\"([^\"]+)\"")


def slug(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    text = path.read_text()
    found = {slug(m.group(1)) for m in re.finditer(r"^#+ (.+)$", text, re.M)}
    return found | set(re.findall(r'<a id="([\w-]+)"></a>', text))


@pytest.mark.parametrize("path", [p for p in DOCS if report.MARKER.search(p.read_text())], ids=lambda p: p.name)
def test_generated_parts_match_the_result_files(path):
    text = path.read_text()
    assert report.render_document(text) == text, f"{path.name} differs from bench/results: run python bench/report.py"


def test_generated_files_match_the_result_files():
    for path, render in report.FILES.items():
        assert path.read_text() == render(), f"{path.name} differs: run python bench/report.py"


def test_a_changed_result_changes_the_rendered_table(tmp_path, monkeypatch):
    """The check is not vacuous: edit one figure of a result file and the rendered part differs."""
    import json
    import shutil

    results = tmp_path / "results"
    shutil.copytree(report.RESULTS, results)
    data = json.loads((results / "engine-minilm.json").read_text())
    data["minilm"]["methods"][0]["value"] = 0.1234
    (results / "engine-minilm.json").write_text(json.dumps(data))
    monkeypatch.setattr(report, "RESULTS", results)
    part = report.render_part("engine-minilm")
    assert "0.1234 [" in part
    doc = (ROOT / "docs" / "BENCHMARKS.md").read_text()
    assert report.render_document(doc, {}) != doc


@pytest.mark.parametrize("path", DOCS, ids=lambda p: p.name)
def test_every_relative_link_lands_on_a_file_and_a_heading(path):
    for m in LINK.finditer(path.read_text()):
        target = m.group(1) or m.group(2)
        if re.match(r"[a-z]+:", target):
            continue
        file, _, anchor = target.partition("#")
        dest = (path.parent / file).resolve() if file else path
        assert dest.exists(), f"{path.name}: link to missing {target}"
        assert ROOT in dest.parents or dest == ROOT, f"{path.name}: link outside the repository: {target}"
        if anchor:
            assert anchor in anchors(dest), f"{path.name}: {target}: no heading or anchor '{anchor}' in {dest.name}"


def test_the_readme_is_short_and_self_contained():
    text = (ROOT / "README.md").read_text()
    assert len(text.encode()) < 12 * 1024
    assert "../" not in text, "the README points outside the repository"
    for needed in ("make app", "make test", "docs/CLI.md", "docs/BENCHMARKS.md", "docs/CLAIMS.md", "docs/VIEWS.md"):
        assert needed in text


def _doc_refs_in_app() -> list[tuple[str, str, str]]:
    refs = []
    for path in [*(ROOT / "app").glob("*.py"), *(ROOT / "pages").glob("*.py")]:
        if path.name == "docs.py" and path.parent.name == "app":
            continue  # its own helpers (claim_ref: anchors from the registry, checked below)
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", None)) == "doc_ref":
                args = [a.value for a in node.args if isinstance(a, ast.Constant)]
                assert len(args) == 2, f"{path.name}: doc_ref with a non-literal argument cannot be checked"
                refs.append((path.name, *args))
    return refs


def test_every_link_the_app_shows_lands_on_an_anchor():
    from pruning.catalog import all_methods

    refs = _doc_refs_in_app()
    refs += [("registry", "CLAIMS.md", m.claim) for m in all_methods().values() if m.claim]
    assert any(r[0] == "registry" for r in refs), "no method names its claim"
    for where, page, anchor in refs:
        assert anchor in anchors(ROOT / "docs" / page), f"{where}: docs/{page}#{anchor} does not exist"


def test_every_claim_the_app_shows_has_measured_lines():
    from app.docs import claim_lines
    from pruning.catalog import all_methods

    for m in all_methods().values():
        if m.claim:
            lines = claim_lines(m.claim)
            assert lines and all(isinstance(x, str) and x for x in lines), m.name


def test_every_command_says_what_it_is_for_and_points_at_the_cli_docs():
    import argparse

    from pruning.cli import build_parser

    parser = build_parser()
    assert "docs/CLI.md" in parser.format_help()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    cli_doc = (ROOT / "docs" / "CLI.md").read_text()
    for name, p in sub.choices.items():
        text = p.format_help()
        assert p.description and "\n" not in p.description.strip(), name
        assert "docs/CLI.md" in text, name
        assert f"python -m pruning {name}" in cli_doc, f"docs/CLI.md never shows the command {name}"


def test_the_architecture_page_names_every_module():
    text = (ROOT / "docs" / "ARCHITECTURE.md").read_text()
    # the views in pages/ are listed by app/pages_index.py instead (tests/test_app_pages.py checks the index against the folder)
    files = [*(ROOT / "pruning").rglob("*.py"), *(ROOT / "app").rglob("*.py")]
    missing = [str(f.relative_to(ROOT)) for f in files if f.name != "__init__.py" and f.name not in text]
    assert not missing, f"docs/ARCHITECTURE.md does not name: {missing}"
