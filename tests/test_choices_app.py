"""The three choices in the app: the Update select, its URL key, the one-pass label from the registry
(not from "calibrated score method"), and the reconstruction error in Overview's layer table."""

from __future__ import annotations

from pathlib import Path

import pytest

from streamlit.testing.v1 import AppTest

MAIN = str(Path(__file__).resolve().parent.parent / "app" / "main.py")


pytestmark = pytest.mark.usefixtures("tiny_model_folder")  # tests/conftest.py: the app on the tiny BERT


def _clean(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]


def test_the_one_pass_label_follows_the_registry_not_calibration(monkeypatch):
    from app.resources import one_pass_approximation
    from pruning import catalog, registry

    monkeypatch.setattr(registry, "_METHODS", dict(catalog.all_methods()))
    dense_only = registry.Method("toydense", "Toy dense", "Scores from one dense pass are its masks.", run=lambda ctx: None,
                                 scores=lambda ctx: {}, needs_calibration=True)
    assert not one_pass_approximation(dense_only)  # a calibrated criterion by the recipe gets no false label
    assert one_pass_approximation(catalog.get_method("wanda")) and one_pass_approximation(catalog.get_method("ria"))
    assert not one_pass_approximation(catalog.get_method("magnitude"))


def test_the_update_select_reaches_the_request_the_url_and_the_overview_table():
    at = AppTest.from_file(MAIN, default_timeout=180)
    at.run()
    at.switch_page("../pages/overview.py").run()
    at.sidebar.selectbox(key="ps_method").set_value("wanda").run()
    update = at.sidebar.selectbox(key="ps_update")
    assert set(update.options) >= {"the method's own (none)", "None", "OBS", "DSnoT"}
    update.set_value("obs").run()
    _clean(at)
    assert at.query_params.get("update") in ("obs", ["obs"])
    table = at.dataframe[0].value
    errors = table["reconstruction error: wanda"]
    assert len(errors) == len(table) and bool((errors > 0).all()) and bool((errors < 1).all())
    at.sidebar.selectbox(key="ps_method").set_value("mgpp").run()
    assert not [s for s in at.sidebar.selectbox if s.key == "ps_update"]  # a seed procedure takes no update choice


def test_sds_offers_the_update_select_labelled_with_its_bases_own_and_sparsegpt_is_listed_once():
    at = AppTest.from_file(MAIN, default_timeout=180)
    at.run()
    at.switch_page("../pages/runs.py").run()  # a view that prunes nothing as it opens
    method = at.sidebar.selectbox(key="ps_method")
    assert "obs" not in method.options and method.options.count("SparseGPT") == 1  # the alias is looked up, never listed
    method.set_value("sds").run()
    _clean(at)
    assert "the method's own (obs)" in at.sidebar.selectbox(key="ps_update").options  # SparseGPT's, the paper's
    at.sidebar.toggle(key="ps_param_adv_sds").set_value(True).run()
    at.sidebar.selectbox(key="ps_param_sds_base").set_value("wanda").run()
    _clean(at)
    assert "the method's own (none)" in at.sidebar.selectbox(key="ps_update").options  # Wanda's
    at.sidebar.selectbox(key="ps_update").set_value("dsnot").run()
    _clean(at)
    assert at.query_params.get("update") in ("dsnot", ["dsnot"])
    shared = AppTest.from_file(MAIN, default_timeout=180)
    shared.query_params.update({"method": "obs"})  # an address naming the criterion opens SparseGPT itself
    shared.run()
    _clean(shared)
    assert shared.session_state["ps_method"] == "sparsegpt"
