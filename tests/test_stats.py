"""Head statistics on a hand-built model whose only positional signal is a known EP gradient."""

from __future__ import annotations

import math

import pytest
import torch

from circuits import HookedCLIP, RunConfig, World
from conftest import clip_for, tiny_run_config
from circuits.ablate import Ablation, ablated
from circuits.stats import head_bias, term_gradient, term_spread

ALPHA = 0.8  # EP logit added per pixel to the right (head 0) or left (head 1)


def handbuilt_model() -> tuple[HookedCLIP, World]:
    """1 layer, 2 heads, d_head 2. The [CLS] query is e0, keys carry alpha * position along the
    same direction, so on the [CLS] row EP = +-alpha * j / sqrt(2) and every other term is 0:
    head 0 prefers the right object, head 1 the left, whatever the labels."""
    cfg = RunConfig().with_overrides({
        "world.width": 7, "world.n_labels": 5, "world.n_pair_labels": 3, "world.n_pair_positions": 4,
        "world.n_single_positions": 3,
        "model.vision.n_heads": 2, "model.vision.d_model": 8, "model.vision.d_head": 2, "model.vision.qkv_bias": False,
        "model.text.d_model": 8, "model.text.d_head": 2,
    })
    model, world = clip_for(cfg)
    v = model.vision
    with torch.no_grad():
        for p in v.parameters():
            p.zero_()
        W_E, W_pos, attn = v.embed.W_E, v.pos_embed.W_pos, v.blocks[0].attn
        W_E[world.vocab.cls, 0] = 1.0
        for label in range(1, world.cfg.n_labels + 1):
            W_E[label, 1] = 1.0
            W_E[label, 3 + label % 5] = 0.5  # label identity, invisible to Q and K
        W_pos[:, 2] = torch.arange(W_pos.shape[0], dtype=torch.float32)
        for head, sign in ((0, 1.0), (1, -1.0)):
            attn.W_Q[head, 0, 0] = 1.0
            attn.W_K[head, 2, 0] = sign * ALPHA
            attn.W_V[head, 1, 1] = 1.0
            attn.W_O[head, 1, head] = 1.0
    return model, world


def test_known_gradient_gives_the_bias_the_math_says() -> None:
    model, world = handbuilt_model()
    bias = head_bias(model, world.probe("unseen_pair"))
    assert bias.second == [1.0, 0.0] and bias.first == [0.0, 1.0]
    # the gradient runs over every key: head 0 peaks at the last pixel, head 1 at [CLS] itself
    right_object_last = (world["unseen_pair"].positions[:, 1] == world.cfg.width - 1).float().mean()
    assert bias.argmax_second[0] == pytest.approx(float(right_object_last)) and 0 < right_object_last < 1
    assert bias.argmax_other[1] == 1.0
    assert bias.relational_second == [1.0, 0.0] and bias.relational_first == [0.0, 1.0]
    assert bias.label_specific == [0.0, 0.0]


def test_known_gradient_has_the_expected_monotonicity_and_slope() -> None:
    model, world = handbuilt_model()
    grad = term_gradient(model, world.probe(), terms=("EP", "PP", "EE"))
    assert grad["EP"].monotonicity == pytest.approx([1.0, -1.0])
    assert grad["EP"].slope == pytest.approx([ALPHA / math.sqrt(2), -ALPHA / math.sqrt(2)], rel=1e-5)
    assert grad["PP"].slope == pytest.approx([0.0, 0.0], abs=1e-7)
    spread = term_spread(model, world.probe())
    assert spread["EP"] == pytest.approx([1.0, 1.0], rel=1e-5)  # EP is the whole spread of the row
    assert spread["EE"] == pytest.approx([0.0, 0.0], abs=1e-7)


def test_ablating_ep_removes_the_bias_and_flattens_the_cls_row() -> None:
    model, world = handbuilt_model()
    images = world["unseen_pair"].images
    with ablated(model, Ablation(terms=("EP",))):
        _, cache = model.vision.run_with_cache(images)
        bias = head_bias(model, world.probe())
    cls_row = cache["pattern", 0][:, :, 0]
    torch.testing.assert_close(cls_row, torch.full_like(cls_row, 1 / cls_row.shape[-1]))
    assert bias.first == [0.0, 0.0] and bias.second == [0.0, 0.0]


def test_ablating_pp_changes_nothing_here() -> None:
    model, world = handbuilt_model()
    images = world["unseen_pair"].images
    plain = model.vision(images)
    with ablated(model, Ablation(terms=("PP", "EE", "PE"))):
        torch.testing.assert_close(model.vision(images), plain, atol=1e-6, rtol=1e-5)


def test_text_statistics_use_subject_and_object_words() -> None:
    """Text EOT row: positions 0 (subject) and 2 (object); fractions are proper probabilities."""
    model, world = handbuilt_model()
    bias = head_bias(model, world.probe("unseen_pair", "text"))
    assert bias.n_inputs == 2 * 1  # ordered pairs of the 2 held-out labels
    for h in range(len(bias.first)):
        assert bias.first[h] + bias.second[h] <= 1.0
        assert bias.relational_first[h] + bias.relational_second[h] + bias.label_specific[h] == pytest.approx(1.0)


def test_head_bias_without_positional_terms_leaves_the_relational_split_undefined(make_tiny_cfg):
    """Rotary models have no key source P: left/right fractions exist, the relational split does not."""
    cfg = make_tiny_cfg().with_overrides({"model.vision.positional": "rotary"})
    model, world = clip_for(cfg)
    bias = head_bias(model, world.probe())
    assert bias.position_terms == ""
    assert bias.relational_first == bias.relational_second == bias.label_specific == [None, None]
    assert bias.relational == [None, None] and "no term has key source P" in bias.relational_note
    assert all(0 <= f + s <= 1 + 1e-6 for f, s in zip(bias.first, bias.second))


def test_statistics_on_a_2d_grid_mark_the_left_and_right_object_by_column(make_tiny_cfg):
    """On a 3x4 grid the first object is the one in the smaller column, whatever its row."""
    cfg = make_tiny_cfg(width=4, height=3)
    model, world = clip_for(cfg)
    probe = world.probe("unseen_pair")
    first_col, second_col = probe.columns[probe.first], probe.columns[probe.second]
    assert (first_col < second_col).all() and (probe.rows[probe.first] != probe.rows[probe.second]).any()
    bias = head_bias(model, probe)
    assert all(0 <= f + s <= 1 + 1e-6 for f, s in zip(bias.first, bias.second))
    grad = term_gradient(model, probe, terms=("EP",))
    assert len(grad["EP"].profile[0]) == cfg.world.width  # one mean per column


def test_past_layer_0_the_relational_split_is_left_out_with_the_reason(make_tiny_cfg):
    cfg = make_tiny_cfg().with_overrides({"model.vision.n_layers": 2})
    model, world = clip_for(cfg)
    deep = head_bias(model, world.probe(), layer=1)
    assert deep.relational_first == [None, None] and "source H" in deep.relational_note
    assert head_bias(model, world.probe(), layer=0).relational_first[0] is not None


def test_head_bias_labels_name_each_field_in_the_probes_words() -> None:
    model, world = clip_for(tiny_run_config())
    bias = head_bias(model, world.probe())
    labels = bias.labels()
    assert list(labels) == [k for k in bias.rows()[0] if k != "head"]  # every field of a row, in order
    assert labels["first"] == "left" and labels["argmax_second"] == "max right" and labels["relational_first"] == "rel→left"
    text = head_bias(model, world.probe("unseen_pair", "text")).labels()
    assert text["first"] == "subject" and text["relational_second"] == "rel→object" and text["label_specific"] == "label"
