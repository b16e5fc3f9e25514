"""The three choices in the app: the Update select, its URL key, the one-pass label from the registry
(not from "calibrated score method"), and the reconstruction error in Overview's layer table."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

pytest.importorskip("streamlit.testing.v1")
from streamlit.testing.v1 import AppTest  # noqa: E402

MAIN = str(Path(__file__).resolve().parent.parent / "app" / "main.py")


@pytest.fixture(scope="module", autouse=True)
def tiny_model_folder(tiny_bert, tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny_bert_model")
    tiny_bert.model.save_pretrained(folder)
    tiny_bert.tokenizer.save_pretrained(folder)
    env = {"PRUNESCOPE_TEST_MODEL": str(folder), "PRUNESCOPE_EVAL_SIZE": "32", "PRUNESCOPE_CALIBRATION": "8",
           "PRUNESCOPE_RUNS_DIR": str(tmp_path_factory.mktemp("runs"))}
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    yield folder
    for k, v in old.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


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
