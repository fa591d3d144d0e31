"""Specification of training into a checkpoint directory: metrics streamed, output checked
first, nothing left behind when interrupted, an existing checkpoint reused only if its config matches."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest
import torch

from circuits.checkpoint import Run, load, read_metrics
from circuits.config import RunConfig
from circuits.errors import CheckpointError
from circuits.train import train_or_load, train_to_directory

SMALL = [
    "model.vision.d_model=16", "model.vision.d_head=4", "model.vision.n_heads=2",
    "model.text.d_model=12", "model.text.d_head=4", "model.text.n_heads=2",
    "world.n_labels=8", "world.n_pair_labels=4", "train.device=cpu",
]


def small_cfg(*extra: str) -> RunConfig:
    return RunConfig().with_overrides([*SMALL, *extra])


def outputs(run: Run) -> torch.Tensor:
    images = run.task["unseen_pair"].images[:32]
    with torch.no_grad():
        return run.model.cpu()(images, run.task.captions)


def siblings(path: Path) -> list[str]:
    return sorted(p.name for p in path.parent.iterdir() if p.name != path.name)


def test_train_to_directory_streams_metrics_and_saves_the_trained_model(tmp_path: Path) -> None:
    cfg = small_cfg("train.steps=3", "train.eval_every=2")
    run = train_to_directory(cfg, tmp_path / "run", progress=False)
    path = run.path

    assert [row["step"] for row in run.history] == [2, 3]
    assert read_metrics(path) == run.history
    loaded = load(path)
    assert loaded.cfg == cfg and loaded.history == run.history
    assert torch.equal(outputs(loaded), outputs(run))
    assert siblings(path) == []


def test_train_or_load_trains_once_then_reuses_the_checkpoint(tmp_path: Path) -> None:
    cfg = small_cfg("train.steps=3", "train.eval_every=2")
    run, trained = train_or_load(cfg, tmp_path / "run", progress=False)
    path = run.path
    weights = (path / "model.safetensors").read_bytes()

    again, trained_again = train_or_load(cfg, tmp_path / "run", progress=False)

    assert (trained, trained_again) == (True, False)
    assert again.path == path and again.history == run.history
    assert torch.equal(outputs(again), outputs(run))
    assert (path / "model.safetensors").read_bytes() == weights  # not retrained, not rewritten


def test_train_or_load_refuses_a_checkpoint_of_another_config_and_retrains_on_request(tmp_path: Path) -> None:
    cfg = small_cfg("train.steps=3", "train.eval_every=2")
    train_or_load(cfg, tmp_path / "run", progress=False)
    other = small_cfg("train.steps=4", "train.eval_every=2")

    with pytest.raises(CheckpointError, match="different config"):
        train_or_load(other, tmp_path / "run", progress=False)
    run, trained = train_or_load(other, tmp_path / "run", retrain=True, progress=False)

    assert trained and load(run.path).cfg == other and [row["step"] for row in run.history] == [2, 4]


def test_train_to_directory_checks_the_output_before_training(tmp_path: Path, monkeypatch) -> None:
    out = tmp_path / "run"
    out.mkdir()
    (out / "keep.txt").write_text("x")

    def must_not_train(*args, **kwargs):
        raise AssertionError("trained although the output directory was unusable")

    monkeypatch.setattr(importlib.import_module("circuits.train.checkpointed"), "train", must_not_train)
    with pytest.raises(CheckpointError, match="exists and is not empty"):
        train_to_directory(small_cfg(), out, progress=False)
    assert [p.name for p in out.iterdir()] == ["keep.txt"]


def test_interrupted_training_leaves_nothing_behind(tmp_path: Path, monkeypatch) -> None:
    def interrupted(cfg: RunConfig, *, progress: bool, metrics_path: Path, on_eval=None):
        metrics_path.write_text('{"step": 1}\n')
        raise KeyboardInterrupt

    monkeypatch.setattr(importlib.import_module("circuits.train.checkpointed"), "train", interrupted)
    with pytest.raises(KeyboardInterrupt):
        train_to_directory(small_cfg(), tmp_path / "run", progress=False)
    assert list(tmp_path.iterdir()) == []
