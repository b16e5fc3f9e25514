"""The entry points' thread settings (pruning/threads.py): chosen once, before torch loads, the user's own
settings win, in force in libgomp (it prints what it read with OMP_DISPLAY_ENV), and recorded in report.json."""

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pruning import threads
from pruning.errors import PruneScopeError

ROOT = Path(__file__).resolve().parents[1]
OURS = ("OMP_", "GOMP_", "MKL_", "KMP_", "PRUNESCOPE_THREADS")


def test_nothing_set_by_the_user_gives_the_short_spin_and_the_free_cpus():
    c = threads.choose({}, cpus=2, load=0.2)
    assert c.env == {"GOMP_SPINCOUNT": str(threads.SPIN_COUNT)} and c.user == {}
    assert (c.intra_op, c.inter_op) == (2, 1)
    assert threads.choose({}, cpus=2, load=6.0).intra_op == 2  # not fewer under load: fewer would get a smaller share


@pytest.mark.parametrize("cpus,load,passive", [(2, 0.0, False), (2, 1.0, False), (2, 2.0, True), (2, 6.0, True), (4, 3.0, False),
                                               (4, 4.0, True), (2, None, False)])
def test_a_machine_full_at_the_start_gets_the_passive_wait(cpus, load, passive):
    c = threads.choose({}, cpus=cpus, load=load)
    assert c.env == ({"OMP_WAIT_POLICY": "PASSIVE"} if passive else {"GOMP_SPINCOUNT": str(threads.SPIN_COUNT)})
    assert c.intra_op == cpus
    assert ("busy at the start" in threads.describe(c)) is passive
    assert threads.choose({}, cpus=3, load=None).intra_op == 3 and threads.choose({}, cpus=3, load=None).load is None


@pytest.mark.parametrize("key", ["OMP_WAIT_POLICY", "GOMP_SPINCOUNT"])
def test_the_users_wait_setting_wins(key):
    c = threads.choose({key: "ACTIVE" if key == "OMP_WAIT_POLICY" else "5"}, cpus=2, load=0.0)
    assert c.env == {} and key in c.user
    assert c.intra_op == 2  # the thread count is still chosen


@pytest.mark.parametrize("key", ["OMP_NUM_THREADS", "MKL_NUM_THREADS"])
def test_the_users_thread_count_wins(key):
    c = threads.choose({key: "3"}, cpus=2, load=0.5)
    assert c.intra_op is None  # torch reads it itself; nothing is set over it
    assert c.env == {"GOMP_SPINCOUNT": str(threads.SPIN_COUNT)}


def test_prunescope_threads_is_applied_and_a_bad_one_refused():
    assert threads.choose({"PRUNESCOPE_THREADS": "3"}, cpus=2, load=5.0).intra_op == 3
    for bad in ("0", "two", "-1"):
        with pytest.raises(PruneScopeError, match="PRUNESCOPE_THREADS"):
            threads.choose({"PRUNESCOPE_THREADS": bad}, cpus=2, load=0.0)


def _clean_env(**extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith(OURS)}
    env.update(extra)
    return env


def _gomp(cmd, **extra):
    """What libgomp read when it loaded in a fresh process (it prints its settings with OMP_DISPLAY_ENV):
    ``(spin count, wait policy, output)``."""
    out = subprocess.run(cmd, cwd=ROOT, env=_clean_env(OMP_DISPLAY_ENV="VERBOSE", **extra), capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    lines = (out.stdout + out.stderr).splitlines()

    def read(name):
        return next(ln for ln in lines if f"{name} = " in ln).split("=", 1)[1].strip(" '")

    return read("GOMP_SPINCOUNT"), read("OMP_WAIT_POLICY"), out


def _chosen(out) -> str:
    """The wait the child says it chose (``--help``'s threads line, or the probe's CHOSE line)."""
    text = " ".join(out.stdout.split())
    return "passive" if ("OMP_WAIT_POLICY=PASSIVE" in text or "CHOSE {'OMP_WAIT_POLICY': 'PASSIVE'}" in text) else "spin"


def _as_read(spin: str, policy: str) -> str:
    """What libgomp shows for the two choices: PASSIVE (a spin count of 0), or the short spin. (Its displayed
    OMP_WAIT_POLICY says PASSIVE for its own default too, which spins 300 000 times: the count tells.)"""
    if spin == "0":
        assert policy == "PASSIVE"
        return "passive"
    assert spin == str(threads.SPIN_COUNT), spin
    return "spin"


def test_the_cli_sets_the_wait_before_libgomp_reads_it_and_the_user_wins():
    """The child chooses from the load it sees (quiet: the short spin; full: PASSIVE), so each run checks that
    libgomp read exactly what the child says it chose."""
    probe = "import torch, pruning.threads as t; t.apply(); print('INTRA', torch.get_num_threads(), torch.get_num_interop_threads())"
    before = "import pruning.threads as t; print('CHOSE', t.prepare().env); " + probe
    spin, policy, out = _gomp([sys.executable, "-c", before])
    assert _as_read(spin, policy) == _chosen(out)
    assert "INTRA" in out.stdout and out.stdout.split("INTRA")[1].split()[1] == "1"  # one inter-op thread
    spin, policy, _ = _gomp([sys.executable, "-c", "import torch; import pruning.threads as t; t.prepare()"])
    assert spin not in (str(threads.SPIN_COUNT), "0")  # too late once torch is loaded: why the entry points prepare first
    spin, policy, out = _gomp([sys.executable, "-m", "pruning", "--help"])
    assert _as_read(spin, policy) == _chosen(out)
    spin, _, out = _gomp([sys.executable, "-m", "pruning", "--help"], GOMP_SPINCOUNT="777", PRUNESCOPE_THREADS="1")
    assert spin == "777" and "GOMP_SPINCOUNT=777" in out.stdout.replace("\n", " ")
    assert "1 intra-op thread(s) from PRUNESCOPE_THREADS" in " ".join(out.stdout.split())


def test_a_bad_thread_count_is_one_error_line():
    out = subprocess.run([sys.executable, "-m", "pruning", "models"], cwd=ROOT, env=_clean_env(PRUNESCOPE_THREADS="lots"),
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 2 and out.stderr.strip().splitlines() == ["error: PRUNESCOPE_THREADS must be a whole number of threads, at least 1 (got 'lots')"]


def test_the_report_records_the_settings_in_force(tmp_path, tiny_folder):
    out = tmp_path / "run"
    env = _clean_env(PRUNESCOPE_THREADS="1")
    done = subprocess.run([sys.executable, "-m", "pruning", "prune", "--model", str(tiny_folder), "--method", "magnitude",
                           "--sparsity", "0.5", "--no-model", "--out", str(out)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    rec = json.loads((out / "report.json").read_text())["threads"]
    assert rec["intra_op"] == 1 and rec["inter_op"] == 1
    assert rec["user"] == {"PRUNESCOPE_THREADS": "1"}
    assert rec["wait"] == threads.wait_for(rec["cpus"], rec["load_at_start"]) and rec["wait_in_force"] is True


def _calls(tree):
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            f = node.func
            yield node, (f.attr if isinstance(f, ast.Attribute) else f.id if isinstance(f, ast.Name) else "")


def test_only_the_entry_points_touch_threads_or_the_openmp_environment():
    """No engine module sets a thread count or an OpenMP variable; only cli.py / __main__.py call prepare/apply."""
    setters = {"set_num_threads", "set_num_interop_threads", "mkl_set_num_threads", "putenv"}
    offenders = []
    for path in sorted((ROOT / "pruning").rglob("*.py")):
        rel = path.relative_to(ROOT).as_posix()
        if rel == "pruning/threads.py":
            continue
        tree = ast.parse(path.read_text())
        for node, name in _calls(tree):
            if name in setters:
                offenders.append(f"{rel}:{node.lineno} {name}")
            if name in ("prepare", "apply") and isinstance(node.func, ast.Attribute) and getattr(node.func.value, "id", "") == "threads":
                if rel not in ("pruning/cli.py", "pruning/__main__.py"):
                    offenders.append(f"{rel}:{node.lineno} threads.{name}")
            if name in ("setdefault", "update", "pop") and "environ" in ast.unparse(node.func):
                offenders.append(f"{rel}:{node.lineno} os.environ.{name}")
        for node in ast.walk(tree):  # os.environ["OMP_..."] = ...
            if isinstance(node, (ast.Assign, ast.AugAssign)):
                for target in getattr(node, "targets", [getattr(node, "target", None)]):
                    if isinstance(target, ast.Subscript) and "environ" in ast.unparse(target.value):
                        offenders.append(f"{rel}:{node.lineno} {ast.unparse(target)}")
    assert offenders == []
