"""Figures show exactly the analysis they name: every trace's data is checked against the
library function it visualises, on a small untrained model (no training needed: the figures
must be faithful whatever the weights)."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import plotly.graph_objects as go
import pytest
import torch

from circuits import HookedCLIP, RunConfig, World
from conftest import clip_for
from circuits import viz
from circuits.ablate import Ablation, evaluate_ablation
from circuits.decompose import decompose, pooled_row_terms
from circuits.errors import CircuitsError
from circuits.evaluation import similarity_matrix
from circuits.stats import head_bias, term_gradient, term_spread

N_HEADS = 4


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """These tensors are tiny: intra-op threads only add synchronisation (and stall badly on a
    busy machine). Restored afterwards."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def pair() -> tuple[HookedCLIP, World]:
    """Default architecture (1 layer, 4 heads, Q/K/V biases: all nine score terms), tiny world:
    labels 1..4 train, 5..6 held out, 10 pixels."""
    cfg = RunConfig().with_overrides({"world.n_labels": 6, "world.n_pair_labels": 4, "world.n_pair_positions": 40,
                                      "train.steps": 0,
                                      "model.vision.d_model": 32, "model.vision.d_head": 8,
                                      "model.text.d_model": 32, "model.text.d_head": 8})
    return clip_for(cfg)


@pytest.fixture(scope="module")
def model(pair) -> HookedCLIP:
    return pair[0]


@pytest.fixture(scope="module")
def world(pair) -> World:
    return pair[1]


@pytest.fixture(scope="module")
def image(world: World) -> torch.Tensor:
    """An unseen-pair image: label 5 at pixel 2, label 6 at pixel 6."""
    return world.parse_image("0 0 5 0 0 0 6 0 0 0")[0]


def z(trace: go.Heatmap) -> np.ndarray:
    return np.asarray(trace.z, dtype=float)


def assert_close(a, b, tol: float = 1e-6) -> None:
    np.testing.assert_allclose(np.asarray(a, dtype=float), np.asarray(b, dtype=float), atol=tol, rtol=1e-5)


def subplot_titles(fig: go.Figure) -> list[str]:
    return [a.text for a in fig.layout.annotations]


# ----------------------------------------------------------------------------- helpers
def test_heads_are_named_h0_to_hn() -> None:
    assert viz.head_names(4) == ["H0", "H1", "H2", "H3"]


def test_position_labels_name_cls_and_each_pixel_with_its_value(model: HookedCLIP, image: torch.Tensor, world: World) -> None:
    labels = viz.position_labels(world, image)
    assert labels[0] == "CLS" and labels[3] == "2:5" and labels[7] == "6:6" and labels[1] == "0:0"
    assert len(labels) == len(set(labels)) == world.n_ctx_vision
    words = viz.position_labels(world, world.captions[world.caption_id(5, 6)], "text")
    assert words == ["5", "is on the left of", "6", "[EOT]"]


def test_swap_objects_exchanges_the_labels_and_keeps_the_positions(model: HookedCLIP, image: torch.Tensor, world: World) -> None:
    pair = viz.swap_objects(world, image)
    assert pair.shape == (2, world.n_ctx_vision)
    assert torch.equal(pair[0], image)
    assert world.image_text(pair[1]) == "0 0 6 0 0 0 5 0 0 0"
    with pytest.raises(CircuitsError, match="exactly two objects"):
        viz.swap_objects(world, "0 0 5 0 0 0 0 0 0 0")


# ----------------------------------------------------------------------------- attention (Fig. 4b, 6a)
def test_attention_patterns_show_the_hook_pattern_of_each_image_and_head(model: HookedCLIP, image: torch.Tensor, world: World) -> None:
    fig = viz.attention_patterns(model, world, image, swap=True)
    images = viz.swap_objects(world, image)
    _, cache = model.vision.run_with_cache(images)
    pattern = cache["blocks.0.attn.hook_pattern"]  # [image, head, q, k]
    assert len(fig.data) == 2 * N_HEADS
    for i in range(2):
        for h in range(N_HEADS):
            trace = fig.data[i * N_HEADS + h]
            assert_close(z(trace), pattern[i, h])
            assert list(trace.x) == list(trace.y) == viz.position_labels(world, images[i])
            assert f"H{h}" in trace.name
    assert fig.data[0].x[0] == "CLS"
    assert subplot_titles(fig)[:N_HEADS] == ["H0", "H1", "H2", "H3"]
    assert fig.layout.coloraxis.cmin == 0 and fig.layout.coloraxis.cmax == 1  # probabilities
    assert fig.layout.yaxis.autorange == "reversed" and fig.layout.xaxis.type == "category"
    assert "Fig. 4b" in fig.layout.title.text
    # the swapped image is labelled with its own pixels: label 6 now sits at pixel 2
    assert fig.data[N_HEADS].x[3] == "2:6"


def test_attention_patterns_accept_image_strings(model: HookedCLIP, world: World) -> None:
    fig = viz.attention_patterns(model, world, ["0 0 5 0 0 0 6 0 0 0", "6 0 0 0 0 0 0 0 0 5"])
    _, cache = model.vision.run_with_cache(world.parse_image("6 0 0 0 0 0 0 0 0 5"))
    assert_close(z(fig.data[N_HEADS + 2]), cache["pattern", 0][0, 2])


def test_attention_patterns_of_the_text_encoder_are_causal_and_name_the_words(model: HookedCLIP, world: World) -> None:
    captions = world.captions[[world.caption_id(5, 6), world.caption_id(6, 5)]]
    fig = viz.attention_patterns(model, world, captions, encoder="text")
    _, cache = model.text.run_with_cache(captions)
    assert_close(z(fig.data[N_HEADS + 1]), cache["pattern", 0][1, 1])
    assert fig.data[0].x[-1] == "[EOT]"
    assert np.allclose(np.triu(z(fig.data[0]), 1), 0)


# ----------------------------------------------------------------------------- terms (Fig. 5a-b, 12-14)
def test_term_grid_shows_every_decomposition_term_per_head_centred_at_zero(model: HookedCLIP, image: torch.Tensor, world: World) -> None:
    fig = viz.term_grid(model, world, image)
    d = decompose(model, image[None])
    terms = model.vision.term_names(0)
    assert len(terms) == 9 and len(fig.data) == len(terms) * N_HEADS
    for j, t in enumerate(terms):
        for h in range(N_HEADS):
            trace = fig.data[j * N_HEADS + h]
            assert trace.name == f"{t}, H{h}"
            assert_close(z(trace), d.terms[t][0, h])
    assert fig.data[0].x[0] == fig.data[0].y[0] == "CLS"
    assert subplot_titles(fig)[: len(terms)] == terms
    # the CLS row is outlined in every panel
    rects = [s for s in fig.layout.shapes if s.type == "rect"]
    assert len(rects) == len(fig.data)
    assert all((s.y0, s.y1) == (-0.5, 0.5) and (s.x0, s.x1) == (-0.5, world.n_ctx_vision - 0.5) for s in rects)
    assert {(s.xref, s.yref) for s in rects} == {(tr.xaxis, tr.yaxis) for tr in fig.data}
    assert "CLS row" in fig.layout.title.text and "Fig. 5a" in fig.layout.title.text


def test_term_grid_puts_every_panel_on_one_colour_scale_with_a_colour_bar(model: HookedCLIP, image: torch.Tensor, world: World) -> None:
    fig = viz.term_grid(model, world, image)
    d = decompose(model, image[None])
    largest = max(float(v.abs().max()) for v in d.terms.values())
    assert {tr.coloraxis for tr in fig.data} == {"coloraxis"}  # no panel has a range of its own
    axis = fig.layout.coloraxis
    assert axis.cmid == 0 and axis.cmax == pytest.approx(largest, rel=1e-5) and axis.cmin == pytest.approx(-largest, rel=1e-5)
    assert axis.colorscale[0][1] == go.Heatmap(colorscale="RdBu_r").colorscale[0][1]
    assert axis.showscale is not False and "logit" in axis.colorbar.title.text
    corners = [a.text for a in fig.layout.annotations if a.text.startswith("max |x|")]
    assert len(corners) == len(fig.data)
    assert corners[0] == f"max |x| {float(d.terms['EE'][0, 0].abs().max()):.2g}"
    assert "one colour scale for all panels" in fig.layout.title.text


def test_term_grid_per_panel_scales_are_marked_as_such(model: HookedCLIP, image: torch.Tensor, world: World) -> None:
    fig = viz.term_grid(model, world, image, terms=["EE", "PB"], scale="panel")
    for trace in fig.data:
        limit = np.abs(z(trace)).max() or 1.0  # an all-zero term (zero-initialised biases) gets +-1
        assert trace.zmid == 0 and trace.showscale is False
        assert trace.zmax == pytest.approx(-trace.zmin) and trace.zmax == pytest.approx(limit, rel=1e-5)
    assert all(a.text.startswith("own scale ±") for a in fig.layout.annotations if "±" in a.text)
    assert sum("own scale" in a.text for a in fig.layout.annotations) == len(fig.data)
    assert "each panel on its own colour scale" in fig.layout.title.text
    with pytest.raises(CircuitsError, match="scale must be"):
        viz.term_grid(model, world, image, scale="auto")


def test_term_grid_sums_terms_and_the_terms_add_up_to_the_scores(model: HookedCLIP, image: torch.Tensor, world: World) -> None:
    fig = viz.term_grid(model, world, image, terms=["EP+PP+BP", "+".join(model.vision.term_names(0))])
    d = decompose(model, image[None])
    assert_close(z(fig.data[1]), d.terms["EP"][0, 1] + d.terms["PP"][0, 1] + d.terms["BP"][0, 1])
    assert_close(z(fig.data[N_HEADS + 2]), d.scores[0, 2], tol=1e-5)


def test_term_grid_of_the_text_encoder_blanks_masked_keys_and_marks_the_eot_row(model: HookedCLIP, world: World) -> None:
    caption = world.captions[world.caption_id(5, 6)]
    fig = viz.term_grid(model, world, caption, encoder="text", terms=["EP"])
    grid = z(fig.data[0])
    assert np.isnan(grid[np.triu_indices(4, 1)]).all() and np.isfinite(grid[np.tril_indices(4)]).all()
    assert_close(grid[3], decompose(model, caption[None], "text").terms["EP"][0, 0, 3])
    assert fig.layout.shapes[0].y0 == 2.5  # the [EOT] row, the last
    assert "EOT row" in fig.layout.title.text


def test_term_profiles_are_the_cls_row_of_each_term(model: HookedCLIP, image: torch.Tensor, world: World) -> None:
    fig = viz.term_profiles(model, world, image, terms=("EE", "EP", "PE", "PP"))
    row = pooled_row_terms(model, image[None])
    assert [tr.name for tr in fig.data] == [t for t in ("EE", "EP", "PE", "PP") for _ in range(N_HEADS)]
    for j, t in enumerate(("EE", "EP", "PE", "PP")):
        for h in range(N_HEADS):
            trace = fig.data[j * N_HEADS + h]
            assert_close(trace.y, row.terms[t][0, h])
            assert trace.xaxis == ("x" if h == 0 else f"x{h + 1}")
    assert fig.data[0].x[0] == "CLS"
    assert "CLS" in fig.layout.yaxis.title.text and "Fig. 5b" in fig.layout.title.text


def test_term_profiles_draw_every_term_that_varies_along_the_row_and_say_which_are_left_out(
    model: HookedCLIP, image: torch.Tensor, world: World
) -> None:
    fig = viz.term_profiles(model, world, image)
    drawn = list(dict.fromkeys(tr.name for tr in fig.data))
    assert drawn == ["EE", "EP", "PE", "PP", "BE", "BP"]  # BP included
    assert "not drawn: EB, PB, BB (key source B, the same at every key)" in fig.layout.title.text
    assert sum(tr.showlegend for tr in fig.data) == len(drawn)  # one legend entry per term


def test_term_profiles_draw_each_term_distinguishably(model: HookedCLIP, image: torch.Tensor, world: World) -> None:
    fig = viz.term_profiles(model, world, image)
    first = [tr for tr in fig.data if tr.xaxis == "x"]
    styles = {(tr.line.color, tr.line.dash, tr.marker.symbol) for tr in first}
    assert len(styles) == len(first)
    assert len({tr.line.dash for tr in first}) == len(first) and len({tr.marker.symbol for tr in first}) == len(first)
    widths = [tr.line.width for tr in first]
    assert widths == sorted(widths, reverse=True) and widths[0] > widths[-1]  # a lower line shows at the edges


def test_coinciding_terms_are_named_with_their_largest_difference() -> None:
    flat = np.zeros((2, 5))
    ramp = np.tile(np.linspace(-10, 10, 5), (2, 1))
    values = {"EP": ramp, "PP": ramp + 0.1, "EE": flat - 3.0, "PE": flat + 3.0}
    assert viz.coinciding_terms(values) == [("EP", "PP", pytest.approx(0.1))]
    assert viz.coinciding_terms(values, tol=0.001) == []
    note = viz._coincidence_note(values, cls_query=True)
    assert note.startswith("lines on top of each other: EP ≈ PP (largest difference 0.1)")
    assert "E[CLS] and P[0] always meet at the CLS query" in note
    assert "E[CLS]" not in viz._coincidence_note(values, cls_query=False)
    assert viz._coincidence_note({"EP": ramp, "PP": -ramp}, cls_query=True) == ""


def test_term_profiles_say_when_lines_lie_on_top_of_each_other(model: HookedCLIP, image: torch.Tensor, world: World) -> None:
    """Force E[CLS] = P[0]: then EE = PE and EP = PP exactly on the CLS row, and the figure says so."""
    tokens = image[None]
    with torch.no_grad():
        cls = int(tokens[0, 0])
        saved = model.vision.embed.W_E[cls].clone()
        model.vision.embed.W_E[cls] = model.vision.pos_embed.W_pos[0]
        try:
            fig = viz.term_profiles(model, world, image)
        finally:
            model.vision.embed.W_E[cls] = saved
    assert "EE ≈ PE" in fig.layout.title.text and "EP ≈ PP" in fig.layout.title.text
    assert "E[CLS] and P[0] always meet at the CLS query" in fig.layout.title.text
    untrained = viz.term_profiles(model, world, image).layout.title.text  # E[CLS] != P[0]: distinct
    assert "EE ≈ PE" not in untrained and "E[CLS]" not in untrained


# ----------------------------------------------------------------------------- head statistics (Fig. 4c, 5d, 13)
def test_bias_bars_are_the_head_bias_fractions(model: HookedCLIP, world: World) -> None:
    bias = head_bias(model, world.probe())
    fig = viz.bias_bars(bias)
    assert [list(tr.x) for tr in fig.data] == [["H0", "H1", "H2", "H3"]] * 2
    assert_close(fig.data[0].y, bias.first)
    assert_close(fig.data[1].y, bias.second)
    assert "left" in fig.data[0].name and "right" in fig.data[1].name
    assert "Fig. 4c" in fig.layout.title.text and fig.layout.xaxis.title.text == "head"
    argmax = viz.bias_bars(bias, argmax=True)
    assert argmax.layout.title.text != fig.layout.title.text  # two figures, two titles
    for trace, want in zip(argmax.data, (bias.argmax_first, bias.argmax_second, bias.argmax_other)):
        assert_close(trace.y, want)
    assert_close(np.sum([tr.y for tr in argmax.data], axis=0), [1.0] * N_HEADS)


def test_bias_bars_use_the_probes_names_of_the_objects(model: HookedCLIP, world: World) -> None:
    bias = head_bias(model, world.probe("unseen_pair", "text"))
    assert bias.names == ("subject", "object")  # what `lenscli bias --encoder text` prints
    fig = viz.bias_bars(bias)
    assert_close(fig.data[0].y, bias.first)
    assert fig.data[0].name == "more attention on the subject" and fig.data[1].name == "more attention on the object"
    assert fig.layout.title.text.startswith("Subject/object attention bias") and "Fig. 6b" in fig.layout.title.text
    renamed = viz.relational_bars(dataclasses.replace(bias, names=("west", "east")))
    assert [tr.name for tr in renamed.data[:2]] == ["relational, toward the west", "relational, toward the east"]


def test_relational_bars_stack_relational_and_label_specific_shares(model: HookedCLIP, world: World) -> None:
    bias = head_bias(model, world.probe())
    fig = viz.relational_bars(bias)
    assert fig.layout.barmode == "stack"
    for trace, want in zip(fig.data, (bias.relational_first, bias.relational_second, bias.label_specific)):
        assert_close(trace.y, want)
    assert_close(np.sum([tr.y for tr in fig.data], axis=0), [1.0] * N_HEADS)
    assert "Fig. 5d" in fig.layout.title.text


def test_term_spread_bars_are_the_term_spread_shares(model: HookedCLIP, world: World) -> None:
    spread = term_spread(model, world.probe())
    fig = viz.term_spread_bars(spread)
    assert [tr.name for tr in fig.data] == list(spread)
    for trace, (term, values) in zip(fig.data, spread.items()):
        assert list(trace.x) == ["H0", "H1", "H2", "H3"]
        assert_close(trace.y, values)
    assert "Fig. 13" in fig.layout.title.text


def test_term_gradient_figure_plots_the_profiles_with_monotonicity_and_slope(model: HookedCLIP, world: World) -> None:
    grads = term_gradient(model, world.probe(), terms=("EP", "PP"))
    fig = viz.term_gradient_figure(grads)
    assert len(fig.data) == 2 * N_HEADS
    for j, (term, g) in enumerate(grads.items()):
        for h in range(N_HEADS):
            trace = fig.data[j * N_HEADS + h]
            assert_close(trace.y, g.profile[h])
            assert list(trace.x) == list(range(world.cfg.width))
            assert f"ρ={g.monotonicity[h]:+.2f}" in trace.hovertemplate
            assert f"slope={g.slope[h]:+.3f}" in trace.hovertemplate
            assert trace.name == term and trace.hovertemplate.startswith(f"{term} H{h}:")
    assert [tr.name for tr in fig.data if tr.showlegend] == ["EP", "PP"]  # one legend entry per term
    rows = viz.gradient_rows(grads)
    assert [r["term"] for r in rows] == ["EP", "PP"] and set(rows[0]) == {"term", "H0", "H1", "H2", "H3"}
    g = grads["PP"]
    assert rows[1]["H2"] == f"ρ {g.monotonicity[2]:+.2f}, slope {g.slope[2]:+.3f}"
    assert "CLS" in fig.layout.yaxis.title.text and "pixel column" in fig.layout.xaxis.title.text


# ----------------------------------------------------------------------------- ablation (Fig. 5e)
@pytest.fixture(scope="module")
def ablation_outputs(model: HookedCLIP, world: World) -> dict[str, dict]:
    return {"EP": evaluate_ablation(model, world, Ablation(terms=("EP",))),
            "EP+PP+BP": evaluate_ablation(model, world, Ablation(terms=("EP", "PP", "BP")))}


def test_ablation_bars_from_one_evaluate_ablation_output(ablation_outputs: dict[str, dict]) -> None:
    out = ablation_outputs["EP+PP+BP"]
    fig = viz.ablation_bars(out)
    assert [tr.name for tr in fig.data] == ["unseen_pair", "label_set"]
    assert list(fig.data[0].x) == ["baseline", "EP+PP+BP"]
    assert_close(fig.data[0].y, [out["baseline"]["unseen_pair"], out["ablated"]["unseen_pair"]])
    assert_close(fig.data[1].y, [out["baseline"]["label_set"], out["ablated"]["label_set"]])
    assert any(s.y0 == 0.5 == s.y1 for s in fig.layout.shapes)  # the chance line
    assert "Fig. 5e" in fig.layout.title.text


def test_ablation_bars_from_named_outputs_and_from_plain_metrics(ablation_outputs: dict[str, dict]) -> None:
    fig = viz.ablation_bars(ablation_outputs, metrics=("unseen_pair", "seen_pair", "top2"))
    assert list(fig.data[0].x) == ["baseline", "EP", "EP+PP+BP"]
    assert [tr.name for tr in fig.data] == ["unseen_pair", "seen_pair"]  # top2: absent in left-only worlds
    assert_close(fig.data[1].y, [ablation_outputs["EP"]["baseline"]["seen_pair"],
                                 ablation_outputs["EP"]["ablated"]["seen_pair"],
                                 ablation_outputs["EP+PP+BP"]["ablated"]["seen_pair"]])
    plain = viz.ablation_bars({"EP": {"unseen_pair": 0.25}, "baseline": {"unseen_pair": 0.75}})
    assert list(plain.data[0].x) == ["baseline", "EP"] and list(plain.data[0].y) == [0.75, 0.25]


def test_ablation_names() -> None:
    assert viz.ablation_name(Ablation(terms=("EP", "PP"), values=("P",))) == "EP+PP+VP"
    assert viz.ablation_name(Ablation(terms=("EP",), heads=(1, 3))) == "EP (H1,H3)"
    assert viz.ablation_name(Ablation(terms=("EP",), encoders=("vision", "text"))) == "EP [vision,text]"


# ----------------------------------------------------------------------------- similarity, training, text
def test_similarity_heatmap_is_the_cosine_matrix_of_the_split(model: HookedCLIP, world: World) -> None:
    data = world["unseen_pair"]
    fig = viz.similarity_heatmap(model, world, "unseen_pair", max_images=len(data))
    ids = torch.unique(data.true_captions)
    assert_close(z(fig.data[0]), similarity_matrix(model, world, data)[:, ids], tol=1e-5)
    assert list(fig.data[0].x) == [world.caption_text(int(c)) for c in ids]
    assert fig.data[0].zmid == 0 and fig.layout.xaxis.title.text == "caption"
    few = viz.similarity_heatmap(model, world, "unseen_pair", max_images=10)
    assert z(few.data[0]).shape == (10, len(ids))
    assert "Fig. 3" in fig.layout.title.text


HISTORY = [
    {"step": 10, "loss": 3.0, "train_single": 0.2, "train_pair": 0.1, "single_object": 0.1, "seen_pair": 0.05,
     "unseen_pair": 0.0, "label_set": 0.1, "scale": 10.0},
    {"step": 20, "loss": 1.5, "train_single": 0.9, "train_pair": 0.6, "single_object": 0.8, "seen_pair": 0.5,
     "unseen_pair": 0.3, "label_set": 0.7, "scale": 12.0},
]


def test_training_curves_plot_every_accuracy_and_the_loss_of_the_metrics_rows() -> None:
    fig = viz.training_curves(HISTORY)
    names = [tr.name for tr in fig.data]
    assert names == ["train_single", "train_pair", "single_object", "seen_pair", "unseen_pair", "label_set", "loss"]
    for trace in fig.data:
        assert list(trace.x) == [10, 20]
        assert list(trace.y) == [row[trace.name] for row in HISTORY]
    loss = fig.data[-1]
    assert loss.yaxis == "y2" and all(tr.yaxis == "y" for tr in fig.data[:-1])  # loss on its own axis
    assert fig.data[0].line.dash == "dash" and fig.data[2].line.dash == "solid"  # training splits dashed
    assert fig.layout.xaxis.title.text == "step" and "Fig. 11" in fig.layout.title.text


def test_training_curves_read_metrics_jsonl_and_checkpoint_directories(tmp_path) -> None:
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(row) + "\n" for row in HISTORY))
    want = viz.training_curves(HISTORY).to_dict()["data"]
    assert viz.training_curves(tmp_path / "metrics.jsonl").to_dict()["data"] == want
    assert viz.training_curves(str(tmp_path)).to_dict()["data"] == want
    (tmp_path / "bad.jsonl").write_text("{not json\n")
    with pytest.raises(CircuitsError, match="line 1 is not valid JSON"):
        viz.training_curves(tmp_path / "bad.jsonl")
    with pytest.raises(CircuitsError, match="missing.jsonl does not exist"):
        viz.training_curves(tmp_path / "missing.jsonl")


def test_text_attention_is_the_eot_row_mean_and_std_over_the_captions(model: HookedCLIP, world: World) -> None:
    ids = torch.unique(world["unseen_pair"].captions)
    fig = viz.text_attention(model, world)
    _, cache = model.text.run_with_cache(world.captions[ids])
    eot = cache["pattern", 0][:, :, -1]  # [caption, head, key]
    for h in range(N_HEADS):
        assert_close(fig.data[h].y, eot[:, h].mean(0))
        assert_close(fig.data[h].error_y.array, eot[:, h].std(0, correction=0))
    assert list(fig.data[0].x) == ["0: X", "1: is on the left of", "2: Y", "3: [EOT]"]
    # long words are wrapped, never cut: the tick texts hold every word of the labels
    ticks = list(fig.layout.xaxis.ticktext)
    assert ticks[1] == "1: is on the<br>left of" and [t.replace("<br>", " ") for t in ticks] == list(fig.data[0].x)
    assert subplot_titles(fig) == ["H0", "H1", "H2", "H3"]
    assert "EOT" in fig.layout.yaxis.title.text and "Fig. 6" in fig.layout.title.text


def test_every_figure_names_its_paper_figure(model: HookedCLIP, image: torch.Tensor, world: World) -> None:
    """Docstrings cite the figure the function reproduces."""
    for name in ("attention_patterns", "term_grid", "term_profiles", "bias_bars", "relational_bars", "ablation_bars",
                 "similarity_heatmap", "training_curves", "term_spread_bars", "text_attention", "term_gradient_figure"):
        assert "Fig. " in getattr(viz, name).__doc__, name
    assert not math.isnan(float(np.nanmax(z(viz.term_grid(model, world, image, terms=["EP"]).data[0]))))
