"""Chart builders, one module per view: pure functions ``DataFrame -> altair.Chart``.

No Streamlit, no torch: every builder takes a tidy DataFrame (columns named in its docstring) and
returns a chart with tooltips and axis titles that say the unit. Pages reshape backend results into
these frames and draw a chart with ``ui.chart(...)`` (which serves it through :func:`common.served`);
tests call the builders directly and validate their specs.

- ``common``: legends, the layer-row height, column checks, units, stacked bars, interval rules and bands, ``served``
- one module per view: ``weights``, ``masks`` (also the Overview's and Runs' per-layer charts), ``candidates``,
  ``steps``, ``ramp``, ``sensitivity``, ``stability``, ``learn``

A builder used by two views lives in the module of the view it was made for; the other imports it from there.
Colours, units and scales come from ``app/style.py``.
"""
