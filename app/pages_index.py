"""The views, in navigation order: the one list of pages (main.py's navigation, links between views, and the
page and browser tests read it). Adding a view is one file in pages/ and one line here (docs/ARCHITECTURE.md,
"Recipe: add a view")."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PageSpec:
    file: str  # in pages/
    title: str  # in the navigation and the page's h1
    icon: str
    url: str  # the URL path, and the name other views link to it by
    run: str | None = None  # the label of the button that starts its results; None: it draws them as it opens
    follows_slider: bool = True  # its shown numbers change with the sidebar's sparsity (the browser test moves it)
    charts_on_open: bool = True  # it draws a chart at the default settings (after ``run``); False: only after a choice of its own


PAGES = [
    PageSpec("overview.py", "Overview", ":material/dashboard:", "overview"),
    PageSpec("weights.py", "Weights", ":material/bar_chart:", "weights"),
    PageSpec("masks.py", "Masks", ":material/grid_on:", "masks"),
    PageSpec("candidates.py", "Random candidates", ":material/casino:", "candidates", run="Sample and score the candidates", follows_slider=False),
    PageSpec("steps.py", "Method steps", ":material/timeline:", "steps", follows_slider=False, charts_on_open=False),  # a method with steps is picked first
    PageSpec("ramp.py", "Sparsity ramp", ":material/trending_down:", "ramp", run="Run the ramp", follows_slider=False),
    PageSpec("sensitivity.py", "Layer sensitivity", ":material/tune:", "sensitivity", run="Measure sensitivity"),
    PageSpec("stability.py", "Stability", ":material/shuffle:", "stability", run="Run stability", follows_slider=False),
    PageSpec("compare.py", "Compare", ":material/compare:", "compare", run="Run the comparison", follows_slider=False),
    PageSpec("runs.py", "Runs", ":material/folder_open:", "runs", follows_slider=False, charts_on_open=False),  # charts once runs are compared
    PageSpec("learn.py", "Learn", ":material/school:", "learn"),
]


_PAGES: dict = {}  # url path -> the st.Page object main.py made in this process


def register(pages) -> None:
    """Remember the st.Page objects so pages can link to each other within the session."""
    for page in pages:
        _PAGES[page.url_path] = page


def page(url: str):
    """The st.Page for a URL path (for st.page_link), or the file path when main.py has not run."""
    if url in _PAGES:
        return _PAGES[url]
    spec = next(p for p in PAGES if p.url == url)
    return f"../pages/{spec.file}"
