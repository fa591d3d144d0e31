"""``lenscli decompose | ablate | bias``: thin layers over `circuits.stats` and `circuits.ablate`.

Their JSON is the library's numbers, their tables render, and every unknown term, source,
layer, head or encoder ends as one ``error: ...`` line that lists what exists."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from circuits.ablate import Ablation, evaluate_ablation
from circuits.checkpoint import load
from circuits.train import train_to_directory
from circuits.stats import head_bias, term_summary
from conftest import assert_tree_close, cli_run, cli_user_error

ACCURACY_KEYS = {"single_object", "seen_pair", "unseen_pair", "label_set"}


run, user_error = cli_run, cli_user_error


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory: pytest.TempPathFactory, make_tiny_cfg) -> Path:
    """A tiny checkpoint (1 layer, 2 heads, width 6), briefly trained."""
    out = tmp_path_factory.mktemp("analysis") / "run"
    train_to_directory(make_tiny_cfg().with_overrides({"train.steps": 60}), out, progress=False)
    return out


# ------------------------------------------------------------------------------ decompose
def test_decompose_json_is_the_term_summary_and_a_profile_that_adds_up(ckpt: Path) -> None:
    out = json.loads(run("decompose", "--ckpt", ckpt, "--image", "0 3 0 0 5 0", "--json"))
    run_ = load(ckpt)
    model, world = run_.model, run_.task
    assert_tree_close(out["summary"], term_summary(model, world.probe("unseen_pair"), 0))
    profile = out["profile"]
    assert profile["tokens"] == [world.vocab.cls, 0, 3, 0, 0, 5, 0]
    assert profile["keys"] == ["CLS", "p0", "p1", "p2", "p3", "p4", "p5"]
    base_terms = model.vision.term_names(0)
    total = sum(torch.tensor(profile["terms"][t]) for t in base_terms)  # [head, key]
    torch.testing.assert_close(total, torch.tensor(profile["scores"]), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(torch.tensor(profile["pattern"]), total.softmax(-1), atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(
        torch.tensor(profile["terms"]["EP+PP"]),
        torch.tensor(profile["terms"]["EP"]) + torch.tensor(profile["terms"]["PP"]),
    )


def test_decompose_text_encoder_profiles_the_eot_row_of_a_caption(ckpt: Path) -> None:
    out = json.loads(run("decompose", "--ckpt", ckpt, "--encoder", "text", "--json"))
    profile = out["profile"]
    assert profile["keys"][1] == "is on the left of" and profile["keys"][-1] == "[EOT]"
    assert {row["head"] for row in out["summary"]} == {0, 1}


def test_decompose_table_lists_every_head_and_term(ckpt: Path) -> None:
    text = run("decompose", "--ckpt", ckpt)
    for word in ("H0", "H1", "EP+PP", "monotonicity", "CLS", "p5", "pattern"):
        assert word in text


# --------------------------------------------------------------------------------- ablate
def test_ablate_json_matches_the_library_and_eval(ckpt: Path) -> None:
    out = json.loads(run("ablate", "--ckpt", ckpt, "--term", "EP", "--term", "PP", "--value", "P", "--heads", "1", "--json"))
    loaded = load(ckpt)
    want = evaluate_ablation(loaded.model, loaded.task, Ablation(terms=("EP", "PP"), values=("P",), heads=(1,)))
    assert out.keys() == {"baseline", "ablated", "ablation"}
    assert out["baseline"].keys() == out["ablated"].keys() == ACCURACY_KEYS
    assert out["ablated"] == pytest.approx(want["ablated"])
    assert out["baseline"] == pytest.approx(json.loads(run("eval", "--ckpt", ckpt, "--json")))
    assert out["ablation"] == {"terms": ["EP", "PP"], "values": ["P"], "encoders": ["vision"], "layers": None, "heads": [1],
                              "block": None}


def test_ablate_table_shows_baseline_ablated_and_change(ckpt: Path) -> None:
    text = run("ablate", "--ckpt", ckpt, "--term", "EP+PP")
    for word in ("baseline", "ablated", "change", "unseen-pair", "label-set", "EP+PP"):
        assert word in text


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--term", "XY"], "unknown term 'XY' in layer 0; terms are EE, EP, EB, PE, PP, PB, BE, BP, BB"),
        (["--value", "Q"], "unknown value source 'Q' in layer 0; sources are E, P, B"),
        (["--term", "EP", "--layer", "3"], "unknown layer 3; this encoder has layers 0..0"),
        (["--term", "EP", "--heads", "0,7"], "unknown head 7; this encoder has heads 0..1"),
        (["--term", "EP", "--heads", "zero"], "must be comma-separated head numbers"),
        (["--term", "EP", "--encoder", "audio"], "unknown encoder 'audio'; encoders are vision, text"),
        ([], "nothing to ablate"),
    ],
)
def test_ablate_bad_input_names_what_exists(ckpt: Path, args: list[str], message: str) -> None:
    assert message in user_error("ablate", "--ckpt", ckpt, *args)


@pytest.mark.slow
def test_ablating_ep_pp_bp_of_the_default_model_leaves_only_label_information(default_checkpoint: Path) -> None:
    """Fig. 5e / Table 2: without the key-position terms the CLS query cannot tell left from right:
    unseen pairs fall to about chance, while single objects and the label set are still read."""
    out = json.loads(run("ablate", "--ckpt", default_checkpoint, "--term", "EP", "--term", "PP", "--term", "BP", "--json"))
    assert out["baseline"]["unseen_pair"] >= 0.9
    assert out["ablated"]["unseen_pair"] <= 0.6
    assert out["ablated"]["single_object"] >= 0.9
    assert out["ablated"]["label_set"] >= 0.9


# ----------------------------------------------------------------------------------- bias
def test_bias_json_is_the_library_head_bias(ckpt: Path) -> None:
    out = json.loads(run("bias", "--ckpt", ckpt, "--json"))
    loaded = load(ckpt)
    want = head_bias(loaded.model, loaded.task.probe("unseen_pair"), 0)
    assert_tree_close(out["heads"], want.rows())
    assert out["n_inputs"] == len(loaded.task["unseen_pair"])
    for row in out["heads"]:
        assert row["first"] + row["second"] <= 1 + 1e-6
        assert row["relational_first"] + row["relational_second"] + row["label_specific"] == pytest.approx(1, abs=1e-6)


def test_bias_table_names_left_and_right_for_images_and_subject_object_for_captions(ckpt: Path) -> None:
    assert "left" in run("bias", "--ckpt", ckpt)
    assert "subject" in run("bias", "--ckpt", ckpt, "--encoder", "text")


def test_bias_on_a_single_object_split_is_a_clear_error(ckpt: Path) -> None:
    assert "does not hold two-object images" in user_error("bias", "--ckpt", ckpt, "--split", "single_object")


# ------------------------------------------------------------------------ figures, report
def test_html_writes_one_self_contained_page_per_command_and_never_clobbers(ckpt: Path, tmp_path: Path) -> None:
    page = tmp_path / "bias.html"
    run("bias", "--ckpt", ckpt, "--html", page)
    text = page.read_text()
    assert text.count("Plotly.newPlot") == 3  # left/right, argmax, relational
    assert '<script src="http' not in text
    before = page.read_bytes()
    assert "exists" in user_error("bias", "--ckpt", ckpt, "--html", page)
    assert page.read_bytes() == before
    run("bias", "--ckpt", ckpt, "--html", page, "--force")

    run("ablate", "--ckpt", ckpt, "--term", "EP", "--html", tmp_path / "ablate.html")
    run("decompose", "--ckpt", ckpt, "--html", tmp_path / "decompose.html")
    assert (tmp_path / "ablate.html").read_text().count("Plotly.newPlot") == 1
    assert (tmp_path / "decompose.html").read_text().count("Plotly.newPlot") == 3


def test_report_goes_into_the_checkpoint_by_default_and_is_not_overwritten(ckpt: Path, tmp_path: Path) -> None:
    out = tmp_path / "r.html"
    assert str(out) in run("report", "--ckpt", ckpt, "--out", out)
    text = out.read_text()
    assert "Term ablation" in text and "Training curves" in text
    assert "exists" in user_error("report", "--ckpt", ckpt, "--out", out)


def test_run_trains_once_then_reuses_the_checkpoint_and_writes_the_report(make_tiny_cfg, tmp_path: Path) -> None:
    config = tmp_path / "tiny.json"
    config.write_text(make_tiny_cfg().to_json())
    out = tmp_path / "main"

    first = run("run", "--config", config, "--out", out, "--quiet")
    weights = (out / "model.safetensors").read_bytes()
    second = run("run", "--config", config, "--out", out, "--quiet")

    assert first.startswith("trained checkpoint") and second.startswith("reusing checkpoint")
    assert (out / "model.safetensors").read_bytes() == weights
    for word in ("unseen-pair", "EP+PP+BP", "rel→left", f"report: {out / 'report.html'}"):
        assert word in second
    assert "different config" in user_error("run", "--config", config, "--set", "train.steps=7", "--out", out)
