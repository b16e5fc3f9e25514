"""Links from the app into the project's documentation, by stable anchors.

The app names a place in the docs as ``docs/PAGE.md#anchor`` (``doc_ref``); the anchors are
explicit (``<a id="...">``) or a heading's GitHub slug, and tests/test_docs.py checks that
every reference written in app/ or pages/, and every method's ``claim`` anchor, exists.
"""

from __future__ import annotations

import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CLAIMS_SUMMARY = ROOT / "bench" / "results" / "claims-summary.json"


def doc_ref(page: str, anchor: str) -> str:
    """``docs/PAGE.md#anchor``: how the app points a reader at a section of the docs."""
    return f"docs/{page}#{anchor}"


def claim_ref(anchor: str) -> str:
    """Where a method's claim (``Method.claim``, checked against docs/CLAIMS.md by the tests) is discussed."""
    return doc_ref("CLAIMS.md", anchor)


def claim_lines(anchor: str) -> list[str]:
    """The measured lines of one claim (rendered from bench/results/claims/ by bench/report.py);
    empty when this checkout has no summary or no line for it."""
    try:
        return list(json.loads(CLAIMS_SUMMARY.read_text()).get(anchor, []))
    except (OSError, ValueError):
        return []
