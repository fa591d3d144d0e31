"""Messages speak CLI in the CLI and Python in Python; scripts answer like the CLI."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from circuits.atomic import check_target
from circuits.errors import CheckpointError
from lenscli.app import app

ROOT = Path(__file__).resolve().parents[2]


def fake_checkpoint(path: Path) -> Path:
    path.mkdir()
    (path / "config.json").write_text("{}")
    return path


def test_the_cli_says_force_flag_for_an_existing_report(tmp_path: Path) -> None:
    ckpt = fake_checkpoint(tmp_path / "run")
    (ckpt / "report.html").write_text("old")
    result = CliRunner().invoke(app, ["report", "--ckpt", str(ckpt)])
    assert result.exit_code == 2
    assert "pass --force" in result.stderr and "force=True" not in result.stderr


def test_the_library_says_force_argument_for_an_existing_checkpoint(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError) as err:
        check_target(fake_checkpoint(tmp_path / "run"), force=False)
    assert "force=True" in str(err.value) and "--force" not in str(err.value)


def test_the_same_error_carries_the_cli_words(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError) as err:
        check_target(fake_checkpoint(tmp_path / "run"), force=False)
    assert "--force" in err.value.cli_message and "--out" in err.value.cli_message


def load_script(path: Path):
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[path.stem] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_reproduce_writes_outside_the_tracked_results_by_default() -> None:
    from circuits.sweep.catalogue import DEFAULT_OUT

    assert not (ROOT / DEFAULT_OUT).resolve().is_relative_to(ROOT / "experiments")


def test_bench_analysis_missing_checkpoint_is_one_line_and_exit_2(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_analysis.py"), "--ckpt", str(tmp_path / "missing")],
                         env=env, capture_output=True, text=True, timeout=300)
    assert (out.returncode, out.stderr.splitlines()) == (2, [f"error: checkpoint {tmp_path / 'missing'} does not exist"])
