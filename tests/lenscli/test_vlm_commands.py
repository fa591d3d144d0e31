"""Prefix-LM checkpoints on the command line: the report, and one-line refusals wherever a
command does not apply to the model family of the checkpoint (issue 13, "Bad input")."""

from __future__ import annotations

import re

import pytest
from conftest import cli_run, cli_user_error

CLIP_ONLY = [["align"], ["rope"], ["text-attention"], ["prune", "--keep", "0", "--out", "{tmp}/pruned"], ["failures"]]


@pytest.mark.parametrize("args", CLIP_ONLY, ids=lambda a: a[0])
def test_clip_only_commands_refuse_a_prefix_lm_checkpoint(args, trained_clip_vlm, tmp_path) -> None:
    line = cli_user_error(*[a.format(tmp=tmp_path) for a in args], "--ckpt", trained_clip_vlm.path)
    assert f"lenscli {args[0]} needs a CLIP (model.kind='clip') checkpoint" in line and "is a prefix-LM" in line


@pytest.mark.parametrize("command", ["norms", "permute", "entropy"])
def test_vlm_commands_refuse_a_clip_checkpoint(command, tiny_clip_checkpoint) -> None:
    line = cli_user_error("vlm", command, "--ckpt", tiny_clip_checkpoint)
    assert f"lenscli vlm {command} needs a prefix-LM toy VLM" in line and "is a CLIP (model.kind='clip')" in line


@pytest.mark.parametrize("command", ["decompose", "bias", ["ablate", "-t", "EP"]], ids=str)
def test_encoder_names_of_the_other_family_are_refused(command, trained_clip_vlm, tiny_clip_checkpoint) -> None:
    command = command if isinstance(command, list) else [command]
    assert "unknown encoder 'vision'" in cli_user_error(*command, "--ckpt", trained_clip_vlm.path)
    assert "unknown encoder 'decoder'; encoders are vision, text" in cli_user_error(
        *command, "-e", "decoder", "--ckpt", tiny_clip_checkpoint)


@pytest.mark.parametrize("overrides, message", [
    (["model.kind=prefix_lm", "model.decoder.vision_source=clip_tokens"], "needs model.decoder.vision_checkpoint"),
    (["model.decoder.vision_norm=match_code"], "a CLIP (model.kind='clip') has none to measure"),
    (["model.kind=prefix_lm", "model.decoder.pool_tokens=3"], "pool_tokens must be a divisor of world.width=10"),
    (["model.kind=prefix_lm", "model.decoder.vision_source=clip_tokens", "model.decoder.vision_checkpoint={tmp}/none"],
     "does not exist"),
])
def test_training_with_an_impossible_vision_setting_is_one_line(overrides, message, tmp_path) -> None:
    sets = [x for o in overrides for x in ("--set", o.format(tmp=tmp_path))]
    assert message in cli_user_error("train", "-q", "--out", tmp_path / "run", *sets)
    assert not (tmp_path / "run").exists()


def test_a_vision_checkpoint_of_the_wrong_world_is_one_line(tiny_clip_checkpoint, tmp_path) -> None:
    line = cli_user_error("train", "-q", "--out", tmp_path / "run", "--set", "model.kind=prefix_lm", "--set",
                          "model.decoder.vision_source=clip_tokens", "--set", f"model.decoder.vision_checkpoint={tiny_clip_checkpoint}")
    assert re.search(r"reads 8 vision token values .* but this task's images have 22", line)


def test_report_of_a_prefix_lm_checkpoint_has_its_sections(trained_clip_vlm, tmp_path) -> None:
    from circuits.report_vlm import SECTIONS

    out = tmp_path / "report.html"
    assert f"report: {out}" in cli_run("report", "--ckpt", trained_clip_vlm.path, "--out", out)
    page = out.read_text()
    assert page.startswith("<!DOCTYPE html>") and "<script src=" not in page  # plotly.js inlined, nothing fetched
    for key, title in SECTIONS.items():
        assert f'<h2 id="{key}">' in page, key
    assert page.count('class="plotly-graph-div"') == 8  # training, norms x2, entropy, maps x2, gradients, ablation
    assert str(trained_clip_vlm.model.vision_source_meta["source"]) in page  # the card names the frozen encoder
    seen = trained_clip_vlm.history[-1]["seen_pair"]
    assert f"<td>seen_pair</td><td>{seen:.3f}</td>" in page  # the summary's accuracy is the model's
    assert "exists; pass --force" in cli_user_error("report", "--ckpt", trained_clip_vlm.path, "--out", out)


def test_report_refuses_clip_headline_numbers_for_a_prefix_lm(trained_clip_vlm, tmp_path) -> None:
    from circuits.errors import CircuitsError
    from circuits.report import write_report

    with pytest.raises(CircuitsError, match="headline numbers are those of the CLIP report"):
        write_report(trained_clip_vlm, tmp_path / "r.html", headline={"accuracies": {}})
    assert not (tmp_path / "r.html").exists()
