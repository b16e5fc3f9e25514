"""PruneScope: `streamlit run app/main.py` (the README's launch command).

Draws the sidebar (settings kept in session state across pages), then runs the
page chosen in the navigation. One file per view in ``pages/``.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # `streamlit run app/main.py` puts only app/ on the path
    sys.path.insert(0, str(ROOT))

from pruning import threads  # noqa: E402
from pruning.errors import PruneScopeError  # noqa: E402

try:  # the OpenMP wait settings, before anything imports torch (this process's first script run)
    threads.prepare()
    _THREADS_ERROR = None
except PruneScopeError as exc:  # a bad PRUNESCOPE_THREADS: said on the page below
    _THREADS_ERROR = str(exc)

import streamlit as st  # noqa: E402

from app import sidebar  # noqa: E402
from app.pages_index import PAGES, register  # noqa: E402

st.set_page_config(page_title="PruneScope", page_icon="✂️", layout="wide")
if _THREADS_ERROR:
    st.error(_THREADS_ERROR)
    st.stop()
threads.apply()  # torch's thread counts, once per process (as the CLI does); engine calls never set them

pages = [st.Page(str(ROOT / "pages" / p.file), title=p.title, icon=p.icon, url_path=p.url, default=(i == 0)) for i, p in enumerate(PAGES)]
register(pages)
navigation = st.navigation(pages, position="sidebar")
# Page widgets (layer choice, toggles) keep their value when the user visits another page and comes back: every
# "ps_" key is assigned again. So a widget whose value cannot be set (a button, a download) never has a "ps_" key:
# "btn_..." and "dl_..." (tests/test_app_pages.py::test_no_button_key_starts_with_ps checks every page and app module).
for key in list(st.session_state):
    if key.startswith("ps_") and key not in sidebar.NOT_ASSIGNABLE:
        st.session_state[key] = st.session_state[key]
sidebar.render()
try:
    navigation.run()
finally:  # the address also holds what the view's own widgets settled on (a refused value is gone from it)
    from app import state, urls  # noqa: E402

    urls.write(state.current())
