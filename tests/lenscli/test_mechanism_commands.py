"""``lenscli align | phases | rope | text-attention | checks``: thin layers over `circuits.align`,
`circuits.phases`, `circuits.rope`, `circuits.text_bias` and `circuits.stat_checks`. Their JSON
is the library's numbers, their tables render, and inputs they do not apply to end as one
``error: ...`` line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from circuits.align import initial_model, rotation_alignment
from circuits.checkpoint import load
from circuits.phases import training_phases
from circuits.rope import rope_analysis
from circuits.train import train_to_directory
from conftest import assert_tree_close, cli_run, cli_user_error



run, user_error = cli_run, cli_user_error


def trained(tmp_path_factory, cfg, name: str) -> Path:
    out = tmp_path_factory.mktemp(name) / "run"
    train_to_directory(cfg.with_overrides({"train.steps": 20}), out, progress=False)
    return out


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory, make_tiny_cfg) -> Path:
    return trained(tmp_path_factory, make_tiny_cfg(), "learned")


@pytest.fixture(scope="module")
def rotary_ckpt(tmp_path_factory, make_tiny_cfg) -> Path:
    return trained(tmp_path_factory, make_tiny_cfg().with_overrides({"model.vision.positional": "rotary"}), "rotary")


def test_align_json_is_the_library_result_with_the_init_null(ckpt: Path) -> None:
    out = json.loads(run("align", "--ckpt", ckpt, "--permutations", "20", "--json"))
    r = load(ckpt)
    expected = rotation_alignment(r.model, r.task.train_labels, r.task.heldout_labels, n_permutations=20,
                                  init_model=initial_model(r.cfg, r.task))
    assert_tree_close(out, json.loads(json.dumps(expected.to_dict())), rel=1e-5, abs=1e-6)
    assert "permutation null (20 re-pairings)" in run("align", "--ckpt", ckpt, "--permutations", "20")


def test_align_with_one_held_out_label_is_a_user_error(tmp_path_factory, make_tiny_cfg) -> None:
    one = trained(tmp_path_factory, make_tiny_cfg(n_pair_labels=7), "one-held-out")  # 8 labels, 7 fitted
    assert "at least 2 held-out labels" in user_error("align", "--ckpt", one)


def test_phases_json_is_the_library_result(ckpt: Path) -> None:
    assert json.loads(run("phases", "--ckpt", ckpt, "--json")) == json.loads(json.dumps(training_phases(ckpt).to_dict()))
    assert "consecutive" in run("phases", "--ckpt", ckpt)


def test_phases_on_a_checkpoint_without_metrics_is_a_user_error(ckpt: Path, tmp_path: Path) -> None:
    bare = tmp_path / "bare"
    bare.mkdir()
    (bare / "config.json").write_text((ckpt / "config.json").read_text())
    assert "metrics.jsonl is missing" in user_error("phases", "--ckpt", bare)


def test_rope_json_is_the_library_result(rotary_ckpt: Path) -> None:
    out = json.loads(run("rope", "--ckpt", rotary_ckpt, "--json"))
    r = load(rotary_ckpt)
    assert_tree_close(out, json.loads(json.dumps(rope_analysis(r.model, r.task.probe("unseen_pair")).to_dict())), rel=1e-5, abs=1e-6)
    table = run("rope", "--ckpt", rotary_ckpt)
    assert "Consistency condition" in table and "Key geometry" in table


def test_rope_on_a_learned_position_model_says_what_applies_instead(ckpt: Path) -> None:
    assert "`lenscli bias`" in user_error("rope", "--ckpt", ckpt)


@pytest.mark.parametrize("command", ["text-attention", "checks"])
def test_tables_render_and_json_parses(ckpt: Path, command: str) -> None:
    assert run(command, "--ckpt", ckpt).strip()
    assert json.loads(run(command, "--ckpt", ckpt, "--json"))


@pytest.mark.parametrize("command", ["align", "phases", "rope"])
def test_html_writes_the_figure_and_refuses_to_overwrite(ckpt: Path, rotary_ckpt: Path, tmp_path: Path, command: str) -> None:
    target = rotary_ckpt if command == "rope" else ckpt
    html = tmp_path / "fig.html"
    run(command, "--ckpt", target, "--html", html)
    assert html.read_text().count("plotly") > 0
    assert "--force" in user_error(command, "--ckpt", target, "--html", html)
