"""A private server, paths limited to allowed roots, readable table errors, bounded calibration (issue 9, items 6-8)."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from pruning.cli import main
from pruning.loading.data import load_classification
from pruning.errors import PruneScopeError

ROOT = Path(__file__).resolve().parents[1]


def test_the_server_binds_to_this_machine_only():
    config = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text())
    assert config["server"]["address"] == "127.0.0.1"


def test_browser_paths_must_lie_under_an_allowed_root(tmp_path, monkeypatch):
    from pruning.store.roots import check_allowed

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("PRUNESCOPE_DATA_DIRS", raising=False)
    monkeypatch.setenv("PRUNESCOPE_RUNS_DIR", str(tmp_path / "runs"))
    (tmp_path / "d.csv").write_text("text,label\nx,1\n")
    assert check_allowed(str(tmp_path / "d.csv"), "dataset") == (tmp_path / "d.csv").resolve()
    for outside in ("/etc/passwd", str(tmp_path / ".." / "elsewhere.csv")):
        with pytest.raises(PruneScopeError, match="outside the folders this app may read") as err:
            check_allowed(outside, "dataset")
        assert "passwd" not in str(err.value) and "elsewhere" not in str(err.value)
    monkeypatch.setenv("PRUNESCOPE_DATA_DIRS", "/etc")
    assert check_allowed("/etc/passwd", "dataset") == Path("/etc/passwd").resolve()


def test_rows_with_another_number_of_columns_name_their_line(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("text,label\ngood film,1\nbad, boring film,0\nfine,1\n")
    with pytest.raises(PruneScopeError, match=r"line 3: this row has 3 fields but the header has 2"):
        load_classification(str(path))


def test_a_table_without_a_header_never_shows_its_rows(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("my secret review text,1\nanother one,0\n")
    with pytest.raises(PruneScopeError) as err:
        load_classification(str(path))
    assert "secret" not in str(err.value) and "2 columns whose first row does not look like a header" in str(err.value)


def test_calibration_that_would_not_fit_is_refused_with_what_fits(tiny_bert):
    from pruning.budget import calibration_bytes, check_calibration

    # tiny BERT: hidden 32, FFN 64, 4 heads; 10 samples of 8 tokens by hand
    assert calibration_bytes(tiny_bert.model, 10, 8) == 4 * (80 * (6 * 32 + 64) + 10 * 4 * 64)
    check_calibration(tiny_bert, 16, 64, available=10**9)
    with pytest.raises(PruneScopeError, match=r"use at most [\d,]+ samples \(--calib \d+\)") as err:
        check_calibration(tiny_bert, 1_000_000, 64, available=10**9)
    fits = int(str(err.value).rsplit("--calib ", 1)[1].rstrip(")"))
    check_calibration(tiny_bert, fits, 64, available=10**9)
    with pytest.raises(PruneScopeError):
        check_calibration(tiny_bert, fits + 1, 64, available=10**9)


def test_cli_calib_far_beyond_memory_ends_in_one_line(tiny_folder, tiny_csv, tmp_path, capsys):
    code = main(["prune", "--model", str(tiny_folder), "--method", "wanda", "--calib", "100000000", "--calib-len", "4096",
                 "--dataset", str(tiny_csv), "--out", str(tmp_path / "run")])
    assert code == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error")]
    assert len(err) == 1 and "--calib" in err[0]
    assert not (tmp_path / "run").exists()
