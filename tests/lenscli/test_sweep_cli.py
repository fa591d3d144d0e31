"""Specification of `lenscli sweep ...` as a user runs it: a real process killed with SIGKILL
mid-way resumes to the same table without retraining finished runs; bad input is one line and a
non-zero exit, and leaves OUT as it was."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from lenscli.app import app

ROOT = Path(__file__).resolve().parents[2]
SPEC = """
seeds = [0, 1]
[set]
"world.width" = 6
"world.n_labels" = 8
"world.n_pair_labels" = 6
"world.n_single_positions" = 3
"world.n_pair_positions" = 4
"train.steps" = {steps}
"train.eval_every" = 50
"train.lr" = 0.003
"train.device" = "cpu"
"model.vision.d_model" = 16
"model.vision.d_head" = 8
"model.vision.n_heads" = 2
"model.text.d_model" = 16
"model.text.d_head" = 8
"model.text.n_heads" = 2
[grid]
"world.n_pair_positions" = [3, 4]
"""
COLUMNS = ["run_id", "status", "world.n_pair_positions", "seed", "single_object", "seen_pair", "unseen_pair", "loss"]


def lenscli(*args: str, **kwargs) -> list[str]:
    return [sys.executable, "-m", "lenscli.app", *args]


def env() -> dict:
    return {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(lenscli(*args), capture_output=True, text=True, env=env(), cwd=ROOT, timeout=300)


def invoke(*args: str):
    """In-process (no interpreter start): for the commands that need no real process."""
    return CliRunner().invoke(app, list(args))


def table(out: Path) -> pd.DataFrame:
    frame = pd.read_csv(out / "results.csv")
    return frame[COLUMNS].sort_values("run_id").reset_index(drop=True)


def tree_digest(path: Path) -> dict:
    return {str(p.relative_to(path)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(path.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def spec(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("spec") / "tiny.toml"
    path.write_text(SPEC.format(steps=200))
    return path


@pytest.fixture(scope="module")
def uninterrupted(spec, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("clean") / "out"
    done = run("sweep", "run", str(spec), "--out", str(out), "--jobs", "1", "--quiet")
    assert done.returncode == 0, done.stderr
    return out


def finished_runs(out: Path) -> list[Path]:
    """Run directories under their final name (pathlib's glob also matches the hidden temporaries)."""
    return [p.parent for p in (out / "runs").glob("*/config.json") if not p.parent.name.startswith(".")]


def test_a_sweep_killed_with_sigkill_resumes_to_the_same_table_without_retraining(spec, uninterrupted, tmp_path):
    out = tmp_path / "out"
    proc = subprocess.Popen(lenscli("sweep", "run", str(spec), "--out", str(out), "--jobs", "1", "--quiet"),
                            env=env(), cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and len(finished_runs(out)) < 1:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    finished = {p.name: (p / "model.safetensors").stat().st_mtime_ns for p in finished_runs(out)}
    assert 1 <= len(finished) < 4, "the kill should land mid-way"
    time.sleep(0.5)  # the workers notice their parent is gone
    again = run("sweep", "run", str(spec), "--out", str(out), "--jobs", "1", "--quiet")
    assert again.returncode == 0, again.stderr
    assert f"{len(finished)} already done" in again.stdout
    assert {k: (out / "runs" / k / "model.safetensors").stat().st_mtime_ns for k in finished} == finished
    assert table(out).equals(table(uninterrupted))
    assert not [p for p in (out / "runs").iterdir() if p.name.startswith(".")], "no temporary leftovers"


def test_status_and_table_read_the_sweep_without_changing_it(uninterrupted):
    before = tree_digest(uninterrupted)
    status = invoke("sweep", "status", str(uninterrupted))
    runs = invoke("sweep", "table", str(uninterrupted), "--runs", "--csv")
    grouped = invoke("sweep", "table", str(uninterrupted), "--json")
    assert status.exit_code == runs.exit_code == grouped.exit_code == 0
    assert "4 done" in status.stdout
    assert pd.read_csv(__import__("io").StringIO(runs.stdout))["run_id"].nunique() == 4
    assert len(__import__("json").loads(grouped.stdout)) == 2
    assert tree_digest(uninterrupted) == before


def test_a_sweep_of_seeds_alone_tables_as_one_row(tmp_path):
    spec = bad(tmp_path, "seeds.toml", SPEC.format(steps=5).split("[grid]")[0])
    out = tmp_path / "out"
    assert invoke("sweep", "run", str(spec), "--out", str(out), "--jobs", "1", "--quiet").exit_code == 0
    grouped = invoke("sweep", "table", str(out), "--json")
    assert grouped.exit_code == 0, grouped.output
    (row,) = __import__("json").loads(grouped.stdout)
    assert row["unseen_pair_count"] == 2
    assert row["unseen_pair_mean"] == pytest.approx(pd.read_csv(out / "results.csv")["unseen_pair"].mean())


def test_analyze_adds_its_columns_and_refuses_an_empty_request_in_one_line(uninterrupted, tmp_path):
    out = tmp_path / "out"
    __import__("shutil").copytree(uninterrupted, out)
    nothing = invoke("sweep", "analyze", str(out))
    assert nothing.exit_code != 0 and nothing.stderr.strip().startswith("error: nothing to analyze")
    done = invoke("sweep", "analyze", str(out), "--ablate", "EP", "--top1", "--jobs", "1", "--quiet")
    assert done.exit_code == 0, done.output
    frame = pd.read_csv(out / "results.csv")
    assert frame[["ablate.EP.unseen_pair", "top1.correct", "top1.one_object"]].notna().all().all()


def bad(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.mark.parametrize("case", ["unknown-key", "bad-value", "empty-grid", "unequal-zip", "different-spec", "out-is-a-file",
                                  "ray-unreachable"])
def test_bad_input_is_one_line_a_nonzero_exit_and_out_untouched(case, spec, uninterrupted, tmp_path):
    out, extra = uninterrupted, []
    if case == "unknown-key":
        s = bad(tmp_path, "s.toml", SPEC.format(steps=200) + '"world.colour" = [1]\n')
    elif case == "bad-value":
        s = bad(tmp_path, "s.toml", SPEC.format(steps=200).replace("[3, 4]", "[3, 4000]"))
    elif case == "empty-grid":
        s = bad(tmp_path, "s.toml", SPEC.format(steps=200).replace("[3, 4]", "[]"))
    elif case == "unequal-zip":
        s = bad(tmp_path, "s.toml", SPEC.format(steps=200) + '[[zip]]\n"train.lr" = [0.1, 0.2]\n"train.weight_decay" = [0.1]\n')
    elif case == "different-spec":
        s = bad(tmp_path, "s.toml", SPEC.format(steps=201))
    elif case == "out-is-a-file":
        s, out = spec, tmp_path / "file"
        out.write_text("mine")
    else:
        s, extra = spec, ["--backend", "ray", "--address", "127.0.0.1:9"]
    before = tree_digest(out) if out.is_dir() else out.read_text()
    result = invoke("sweep", "run", str(s), "--out", str(out), "--quiet", *extra)
    assert result.exit_code != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert (tree_digest(out) if out.is_dir() else out.read_text()) == before


def test_the_ray_backend_without_ray_says_how_to_install_it(spec, tmp_path):
    blocker = tmp_path / "noray"
    blocker.mkdir()
    (blocker / "ray.py").write_text("raise ImportError('no ray here')\n")
    code = ("import sys, importlib.util; orig = importlib.util.find_spec\n"
            "importlib.util.find_spec = lambda n, *a: None if n == 'ray' else orig(n, *a)\n"
            "from lenscli.app import main; sys.argv = ['lenscli'] + sys.argv[1:]; main()")
    result = subprocess.run([sys.executable, "-c", code, "sweep", "run", str(spec), "--out", str(tmp_path / "out"), "--backend", "ray"],
                            capture_output=True, text=True, env=env(), cwd=ROOT, timeout=120)
    assert result.returncode != 0
    assert result.stderr.strip().count("\n") == 0 and 'pip install -e ".[ray]"' in result.stderr
    assert not (tmp_path / "out").exists()
