"""``lenscli prune | failures`` and the 3-object rows of ``lenscli eval`` (App. M, N, P)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from circuits.checkpoint import load
from circuits.train import train_to_directory
from lenscli.app import app

runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def ckpt4(tmp_path_factory) -> Path:
    from conftest import tiny_run_config

    cfg = tiny_run_config().with_overrides({"model.vision.n_heads": 4, "train.steps": 4, "train.eval_every": 2})
    out = tmp_path_factory.mktemp("prune") / "run"
    train_to_directory(cfg, out, progress=False)
    return out


def test_prune_writes_a_checkpoint_with_the_removed_heads_zero_and_prune_json(ckpt4, tmp_path):
    out = tmp_path / "pruned"
    result = invoke("prune", "--ckpt", ckpt4, "--keep", "0,2", "--out", out, "--steps", "2", "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["pruning"]["keep"] == [0, 2] and summary["steps"] == 2
    assert set(summary) == {"pruning", "steps", "original", "before", "after"}
    W_V = load(out).model.vision.blocks[0].attn.W_V
    assert bool((W_V[[1, 3]] == 0).all()) and bool((W_V[[0, 2]] != 0).any())
    assert json.loads((out / "prune.json").read_text())["source"] == str(ckpt4)


@pytest.mark.parametrize(
    "keep,needle",
    [("0,7", "head 7"), ("", "at least one head"), ("0,1,2,3", "keeps all 4 heads"), ("a", "comma-separated")],
)
def test_prune_bad_keep_is_one_error_line_exit_2(ckpt4, tmp_path, keep, needle):
    result = invoke("prune", "--ckpt", ckpt4, "--keep", keep, "--out", tmp_path / "x")
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and needle in lines[0]


def test_failures_on_left_only_captions_is_a_one_line_error(ckpt4):
    result = invoke("failures", "--ckpt", ckpt4)
    assert result.exit_code == 2 and "bidirectional" in result.output and len(result.output.strip().splitlines()) == 1


def test_failures_json_partitions_every_unseen_image(tmp_path):
    from conftest import tiny_run_config

    cfg = tiny_run_config(captions="bidirectional").with_overrides({"train.steps": 2, "train.eval_every": 2})
    train_to_directory(cfg, tmp_path / "bi", progress=False)
    result = invoke("failures", "--ckpt", tmp_path / "bi", "--term", "EP", "--json")
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    n_unseen = len(load(tmp_path / "bi").task["unseen_pair"])
    assert sum(out[k] for k in ("n_correct", "n_wrong_ordering", "n_one_true", "n_wrong_label")) == n_unseen
    assert out["wrong_ordering_random"] == pytest.approx(0.2)


def test_eval_prints_three_object_metrics_beside_their_label_aware_chance(tmp_path):
    from conftest import tiny_run_config

    cfg = tiny_run_config(max_objects=3, n_labels=9, n_pair_labels=6).with_overrides({"train.steps": 2, "train.eval_every": 2})
    train_to_directory(cfg, tmp_path / "three", progress=False)
    result = invoke("eval", "--ckpt", tmp_path / "three")
    assert result.exit_code == 0, result.output
    rows = {line.split("│")[1].strip(): line for line in result.stdout.splitlines() if line.count("│") >= 4}
    assert "label-aware chance" in result.stdout
    assert rows["3obj top-1"].split("│")[3].strip() == "50.0%"
    assert rows["3obj top-3 mean"].split("│")[3].strip() == "1.50"
    assert rows["3obj top-3 all"].split("│")[3].strip() == "5.0%"
