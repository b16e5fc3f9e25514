"""Values from outside the app (a run folder, a dataset, the address, an error quoting them) shown as text.

Streamlit renders Markdown in ``st.markdown``, ``st.caption``, alerts, metric labels and values,
button labels and tooltips: a shared ``report.json`` field such as ``![x](https://host/t.png)``
would make the browser fetch that address, and ``**...**`` could fake text in the app's own
sentences. :func:`md` escapes every character Markdown (and Streamlit's ``:color[...]``,
``:emoji:`` and ``$math$`` additions) gives a meaning, so the value shows literally.
"""

from __future__ import annotations

import re

# Characters with a meaning anywhere in a line (CommonMark lets any ASCII punctuation be backslash-escaped):
# emphasis, code, links and images, strikethrough, math, entities and table pipes, and a colon that could
# open Streamlit's :directives: or a URL scheme (so no autolink). Others (. - + # = > digits) mean something
# only at the start of a line. Raw HTML is never rendered (Streamlit's default), so < and > stay as typed.
_SPECIAL = set("\\`*_[]~$&!|")
_DIRECTIVE = re.compile(r":(?=[A-Za-z/])")  # :red[...], :smile:, :material/icon: (a colon before a digit means nothing)
_LINE_START = re.compile(r"^(\s*)([#+\-=>]|\d+[.)])")


def md(value) -> str:
    """``value`` as Markdown that renders exactly as its text (one line: line breaks become spaces)."""
    one_line = " ".join(str(value).splitlines())
    out = _DIRECTIVE.sub(r"\\:", "".join("\\" + c if c in _SPECIAL else c for c in one_line))
    return _LINE_START.sub(lambda m: m.group(1) + m.group(2)[:-1] + "\\" + m.group(2)[-1], out)
