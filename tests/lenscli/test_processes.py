"""lenscli as real processes meet it: signals, a second writer, a missing GPU, a killed writer's
leftovers. Each test runs ``python -m lenscli.app`` in a subprocess on a tiny config."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TINY = [
    "--set", "model.vision.d_model=16", "--set", "model.vision.d_head=4",
    "--set", "model.text.d_model=16", "--set", "model.text.d_head=4",
    "--set", "world.n_labels=6", "--set", "world.n_pair_labels=4", "--set", "world.width=5",
    "--set", "train.device=cpu", "--quiet",
]
LONG = [*TINY, "--set", "train.steps=1000000", "--set", "train.eval_every=1"]  # far longer than any test


def lenscli(*args: str | Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-m", "lenscli.app", *map(str, args)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def temporaries(parent: Path) -> list[Path]:
    return [p for p in parent.iterdir() if ".tmp-" in p.name]


def wait_until_training(parent: Path, proc: subprocess.Popen, timeout: float = 120) -> None:
    """Until the run has logged a training step into its temporary checkpoint."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        if any((t / "metrics.jsonl").is_file() and (t / "metrics.jsonl").stat().st_size for t in temporaries(parent)):
            return
        time.sleep(0.1)
    proc.kill()
    pytest.fail("training did not start")


@pytest.fixture
def running(tmp_path: Path):
    """A `lenscli train --out tmp/run` in the middle of training; killed at the end of the test."""
    proc = lenscli("train", *LONG, "--out", tmp_path / "run")
    wait_until_training(tmp_path, proc)
    yield proc
    if proc.poll() is None:
        proc.kill()
        proc.communicate()


@pytest.mark.slow
def test_sigterm_during_training_leaves_no_temporary_folder(tmp_path: Path, running: subprocess.Popen) -> None:
    running.send_signal(signal.SIGTERM)
    running.communicate(timeout=60)
    assert temporaries(tmp_path) == []


@pytest.mark.slow
def test_sigterm_during_training_exits_like_a_terminated_process(tmp_path: Path, running: subprocess.Popen) -> None:
    running.send_signal(signal.SIGTERM)
    running.communicate(timeout=60)
    assert running.returncode == 128 + signal.SIGTERM


@pytest.mark.slow
def test_a_second_training_into_the_same_out_is_refused_at_start(tmp_path: Path, running: subprocess.Popen) -> None:
    second = lenscli("train", *TINY, "--out", tmp_path / "run")
    _, stderr = second.communicate(timeout=60)  # the first one trains for hours: this returns at start
    assert second.returncode == 2
    assert len(stderr.splitlines()) == 1
    assert "is being written by another process" in stderr
    assert running.poll() is None  # the first run goes on


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_on_a_machine_without_cuda_is_one_line_and_exit_2(tmp_path: Path) -> None:
    proc = lenscli("train", *TINY, "--set", "train.device=cuda", "--out", tmp_path / "run")
    _, stderr = proc.communicate(timeout=120)
    assert (proc.returncode, len(stderr.splitlines())) == (2, 1)
    assert stderr.startswith("error: train.device='cuda' but CUDA is not available")


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def fake_temporary(parent: Path, name: str, pid: int) -> Path:
    tmp = parent / f".{name}.tmp-0123abcd"
    tmp.mkdir(parents=True)
    (tmp / ".owner").write_text(f"{socket.gethostname()} {pid}\n")
    (tmp / "metrics.jsonl").write_text("")
    return tmp


@pytest.mark.slow
def test_a_stale_temporary_folder_of_a_dead_process_is_removed_by_the_next_run(tmp_path: Path) -> None:
    stale = fake_temporary(tmp_path, "killed", dead_pid())
    proc = lenscli("train", *TINY, "--set", "train.steps=2", "--out", tmp_path / "run")
    proc.communicate(timeout=300)
    assert proc.returncode == 0
    assert not stale.exists()


@pytest.mark.slow
def test_a_temporary_folder_of_a_live_process_is_kept(tmp_path: Path) -> None:
    live = fake_temporary(tmp_path, "other", os.getpid())
    proc = lenscli("train", *TINY, "--set", "train.steps=2", "--out", tmp_path / "run")
    proc.communicate(timeout=300)
    assert proc.returncode == 0
    assert live.is_dir()
