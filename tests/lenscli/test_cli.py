"""The lenscli command line as a user meets it: train writes a checkpoint eval can read, and
every bad input ends as one ``error: ...`` line on stderr with exit code 2, never a traceback."""

from __future__ import annotations

import importlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from circuits.config import RunConfig
from circuits.errors import CheckpointError
from lenscli.app import app

# a small, fast model: these tests check plumbing, not accuracy
SMALL = [
    "--set", "model.vision.d_model=32", "--set", "model.vision.d_head=8",
    "--set", "model.text.d_model=32", "--set", "model.text.d_head=8",
    "--set", "world.n_labels=8", "--set", "world.n_pair_labels=4", "--set", "train.device=cpu",
]
ACCURACY_KEYS = {"single_object", "seen_pair", "unseen_pair", "label_set"}

runner = CliRunner()


def invoke(*args: str | Path) -> Result:
    return runner.invoke(app, [str(a) for a in args])


def ok(*args: str | Path) -> Result:
    result = invoke(*args)
    assert result.exit_code == 0, f"exit {result.exit_code}\n{result.output}\n{result.exception!r}"
    return result


def user_error(*args: str | Path) -> str:
    """Run a command that must fail on bad input; return its one-line message."""
    result = invoke(*args)
    assert result.exit_code == 2, f"exit {result.exit_code}\n{result.output}\n{result.exception!r}"
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


def snapshot(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir())}


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A checkpoint written by ``lenscli train`` (20 steps, evaluated every 10)."""
    out = tmp_path_factory.mktemp("cli") / "run"
    result = ok("train", *SMALL, "--set", "train.steps=20", "--set", "train.eval_every=10", "--out", out, "--quiet")
    for label in ("single-object", "seen-pair", "unseen-pair", "label-set", "train time", "checkpoint"):
        assert label in result.stdout
    assert "top-1" not in result.stdout  # left-only captions
    return out


def test_train_writes_a_checkpoint_eval_reads(trained: Path) -> None:
    assert sorted(p.name for p in trained.iterdir()) == ["config.json", "metrics.jsonl", "model.safetensors"]
    rows = [json.loads(line) for line in (trained / "metrics.jsonl").read_text().splitlines()]
    assert [row["step"] for row in rows] == [10, 20]
    assert json.loads((trained / "config.json").read_text())["model"]["vision"]["d_model"] == 32

    result = ok("eval", "--ckpt", trained, "--json")

    assert len(result.stdout.strip().splitlines()) == 1
    metrics = json.loads(result.stdout)
    assert metrics.keys() == ACCURACY_KEYS
    assert all(0.0 <= v <= 1.0 for v in metrics.values())
    assert metrics["unseen_pair"] == pytest.approx(rows[-1]["unseen_pair"])  # same model as at the end of training


def test_eval_table(trained: Path) -> None:
    result = ok("eval", "--ckpt", trained)
    assert "unseen-pair" in result.stdout and "%" in result.stdout


def test_bidirectional_captions_report_top1_and_top2(tmp_path: Path) -> None:
    out = tmp_path / "bi"
    result = ok("train", *SMALL, "--set", "world.captions=bidirectional", "--set", "train.steps=1", "--out", out, "-q")
    assert "top-1" in result.stdout and "top-2" in result.stdout
    assert json.loads(ok("eval", "--ckpt", out, "--json").stdout).keys() == ACCURACY_KEYS | {"top1", "top2", "pair_identity"}


def test_config_file_then_set_overrides(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[RunConfig] = []

    def fake_train(cfg: RunConfig, out: Path, *, force: bool, progress: bool):
        seen.append(cfg)
        raise CheckpointError("stop here")

    monkeypatch.setattr(importlib.import_module("circuits.train"), "train_to_directory", fake_train)
    config = tmp_path / "partial.json"
    config.write_text(json.dumps({"train": {"steps": 7, "lr": 0.01}, "world": {"seed": 5}}))

    assert user_error("train", "--config", config, "--set", "train.steps=3") == "error: stop here"
    assert user_error("train") == "error: stop here"

    assert (seen[0].train.steps, seen[0].train.lr, seen[0].world.seed) == (3, 0.01, 5)
    assert seen[1] == RunConfig()  # no arguments at all: the defaults


def test_train_twice_without_out_uses_fresh_directories(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    for _ in range(2):
        ok("train", *SMALL, "--set", "train.steps=1", "-q")
    runs = sorted((tmp_path / "runs").iterdir())
    assert len(runs) == 2
    assert all((run / "model.safetensors").is_file() for run in runs)
    assert [p.name for p in tmp_path.iterdir()] == ["runs"]


def test_unknown_config_key(tmp_path: Path) -> None:
    message = user_error("train", "--set", "world.colour=red", "--out", tmp_path / "x")
    assert "unknown config key 'world.colour'" in message
    assert not (tmp_path / "x").exists()


def test_out_of_range_value(tmp_path: Path) -> None:
    message = user_error("train", "--set", "world.n_pair_labels=99", "--out", tmp_path / "x")
    assert "world.n_pair_labels" in message and "99" in message
    assert not (tmp_path / "x").exists()


def test_malformed_set() -> None:
    assert "'foo' is not of the form key=value" in user_error("train", "--set", "foo")


def test_missing_config_file(tmp_path: Path) -> None:
    assert "config file not found" in user_error("train", "--config", tmp_path / "nope.json")


def test_existing_out_is_refused_without_force_and_replaced_with_it(trained: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    shutil.copytree(trained, out)
    before = snapshot(out)

    message = user_error("train", *SMALL, "--set", "train.steps=1", "--out", out, "-q")

    assert "exists and is not empty; pass --force" in message
    assert snapshot(out) == before

    ok("train", *SMALL, "--set", "train.steps=1", "--out", out, "--force", "-q")

    assert json.loads((out / "config.json").read_text())["train"]["steps"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["run"]  # no temporary or aside directory left


def test_force_does_not_delete_a_directory_that_is_not_a_checkpoint(tmp_path: Path) -> None:
    out = tmp_path / "notes"
    out.mkdir()
    (out / "keep.txt").write_text("precious")
    assert "not a checkpoint" in user_error("train", *SMALL, "--set", "train.steps=1", "--out", out, "--force", "-q")
    assert snapshot(out) == {"keep.txt": b"precious"}


def test_missing_checkpoint(tmp_path: Path) -> None:
    assert "does not exist" in user_error("eval", "--ckpt", tmp_path / "nowhere", "--json")


def test_corrupt_checkpoint(trained: Path, tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    shutil.copytree(trained, broken)
    (broken / "model.safetensors").write_bytes(b"\x00garbage" * 20)
    assert "model.safetensors is not a valid safetensors file" in user_error("eval", "--ckpt", broken, "--json")


def test_missing_required_option_is_a_usage_error() -> None:
    result = invoke("eval")
    assert result.exit_code == 2
    assert "Missing option '--ckpt'" in result.stderr


def test_real_process_reports_one_line_without_traceback(tmp_path: Path) -> None:
    args = ["train", "--set", "world.n_pair_labels=99"]
    proc = subprocess.run([sys.executable, "-m", "lenscli.app", *args], capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("error: ")
    assert proc.stdout == ""
    assert list(tmp_path.iterdir()) == []  # nothing written, not even runs/


def test_help_does_not_import_torch() -> None:
    code = "import sys, lenscli.app; print('torch' in sys.modules, 'circuits' in sys.modules)"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert proc.stdout.split() == ["False", "False"]
