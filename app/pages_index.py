"""The views, in navigation order (file in pages/, title, icon, URL path)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PageSpec:
    file: str
    title: str
    icon: str
    url: str


PAGES = [
    PageSpec("overview.py", "Overview", ":material/dashboard:", "overview"),
    PageSpec("weights.py", "Weights", ":material/bar_chart:", "weights"),
    PageSpec("masks.py", "Masks", ":material/grid_on:", "masks"),
    PageSpec("candidates.py", "Random candidates", ":material/casino:", "candidates"),
    PageSpec("steps.py", "Method steps", ":material/timeline:", "steps"),
    PageSpec("ramp.py", "Sparsity ramp", ":material/trending_down:", "ramp"),
    PageSpec("sensitivity.py", "Layer sensitivity", ":material/tune:", "sensitivity"),
    PageSpec("stability.py", "Stability", ":material/shuffle:", "stability"),
    PageSpec("compare.py", "Compare", ":material/compare:", "compare"),
    PageSpec("runs.py", "Runs", ":material/folder_open:", "runs"),
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
