"""The HTML report of a prefix-LM toy VLM checkpoint ([L] App. O, [B]; spec A13, B1, B3, B9).

`circuits.report.write_report` sends a ``model.kind="prefix_lm"`` run here. One self-contained
page (plotly.js inlined once, nothing fetched) with: accuracies of every split and label-set
accuracy; the model card (decoder, vision source, frozen CLIP encoder if any); training curves;
the norms of vision tokens, text embeddings and positions as a violin plot on a log axis, with
hidden-state norms per layer ([B] Fig. 3, B1); the normalised attention entropy over the vision
tokens with [B]'s aggregation, per query and per head ([B] Table 4, B9); attention maps of the
text queries over the vision tokens (B9, [B] Fig. 7/8); the text -> vision score-term gradients
of layer 0 ([L] Fig. 23); the block ablation of the position terms on the text -> vision block;
and the token-permutation test ([B] Table 1, B3).
"""

from __future__ import annotations

import html
import json
import time
from typing import Any

import numpy as np
import plotly.graph_objects as go
import torch
from plotly.subplots import make_subplots

from circuits import viz
from circuits.checkpoint import Run
from circuits.evaluation import evaluate
from circuits.report import _document, _Page, html_table
from circuits.spatial.entropy import aggregate_attention, model_vision_entropy
from circuits.spatial.norms import group_norms_by_layer, norm_summary, token_norms
from circuits.spatial.permutation import permutation_test
from circuits.spatial.text_vision import TEXT_QUERIES, text_vision_ablations, text_vision_gradients

SECTIONS: dict[str, str] = {
    "summary": "Summary",
    "card": "Model card",
    "training": "Training curves",
    "norms": "Norms of vision tokens, text embeddings and positions",
    "entropy": "Attention entropy over the vision tokens",
    "maps": "Attention maps of the text queries over the vision tokens",
    "gradient": "Text → vision score-term gradients",
    "ablation": "Text → vision block ablation",
    "permutation": "Token permutation test",
}
N_PERMUTATIONS = 5  # random permutations in the report's permutation test (the CLI's default is 20)


class _VlmPage(_Page):
    def section(self, key: str, intro: str = "") -> None:
        self.parts.append(f'<h2 id="{key}">{html.escape(SECTIONS[key])}</h2>')
        if intro:
            self.parts.append(f'<p class="note">{intro}</p>')


def _relational_split(task) -> str:
    """The two-object split the figures read: unseen pairs, or seen pairs if there are none."""
    return "unseen_pair" if len(task["unseen_pair"]) else "seen_pair"


# ------------------------------------------------------------------------------ figures
def norm_violin(norms: dict[str, torch.Tensor]) -> go.Figure:
    """Per-token L2 norms of each group as violins on a log x axis ([B] Fig. 3)."""
    fig = go.Figure([go.Violin(x=v.detach().cpu().numpy(), name=k, orientation="h", box_visible=True,
                               meanline_visible=True, points=False, line_color=viz._color(i))
                     for i, (k, v) in enumerate(norms.items())])
    fig.update_xaxes(type="log", title_text="L2 norm per token (log scale)")
    return viz._finish(fig, "Norms of the vision tokens entering the decoder, the text embeddings and the positions ([B] Fig. 3)", 380)


def hidden_norm_lines(hidden: dict[str, list[float]]) -> go.Figure:
    """Mean residual-stream norm of each token group entering every layer, and after the last."""
    fig = go.Figure([go.Scatter(x=list(range(len(v))), y=v, name=k, mode="lines+markers", line_color=viz._color(i))
                     for i, (k, v) in enumerate(hidden.items())])
    fig.update_xaxes(title_text="layer (input of; last point: output of the last layer)", dtick=1)
    fig.update_yaxes(type="log", title_text="mean L2 norm")
    return viz._finish(fig, "Hidden-state norms per token group ([B] v2)", 360)


def head_entropy_heatmap(per_head: list) -> go.Figure:
    """Normalised vision-attention entropy per (layer, head) x text query."""
    values = np.asarray(per_head)  # [layer, head, query]
    n_layers, n_heads, n_q = values.shape
    fig = make_subplots(rows=1, cols=n_layers, subplot_titles=[f"layer {l}" for l in range(n_layers)], shared_yaxes=True)
    for layer in range(n_layers):
        fig.add_trace(go.Heatmap(z=values[layer].T, x=viz.head_names(n_heads), y=list(TEXT_QUERIES[:n_q]),
                                 coloraxis="coloraxis", texttemplate="%{z:.2f}"), row=1, col=layer + 1)
    fig.update_yaxes(autorange="reversed", title_text="text query", col=1)
    fig.update_layout(coloraxis=dict(colorscale=viz.SEQUENTIAL, cmin=0.0, cmax=1.0, colorbar=dict(title="H / log₂ N")))
    return viz._finish(fig, "Normalised entropy of each head's attention over the vision tokens (B9, per head)", 330)


def attention_maps(model, task, split: str) -> tuple[go.Figure, go.Figure | None, str]:
    """The text queries' attention over the vision keys for one image of ``split`` (its
    canonical caption teacher-forced), per layer and head; and the [B] aggregation (B9) of the
    [BOS] row (predicting the left object) and the relation row (predicting the right one), on
    the image grid for 2D worlds. Returns the figures and the image's text."""
    data = task[split]
    ascending = (data.objects[:, 0] < data.objects[:, 1]).nonzero()[:, 0]
    index = int(ascending[len(ascending) // 2]) if len(ascending) else len(data) // 2
    tokens = task.batch(split).tokens[index : index + 1].to(model.device)
    names = [f"blocks.{l}.attn.hook_pattern" for l in range(model.cfg.n_layers)]
    with torch.no_grad():
        _, cache = model.run_with_cache(tokens, names_filter=names)
    n_vis, n_heads = model.n_vision, model.cfg.n_heads
    keys = [f"v{i}" for i in range(n_vis)]
    fig = make_subplots(rows=model.cfg.n_layers, cols=n_heads, shared_yaxes=True,
                        subplot_titles=[f"L{l} H{h}" for l in range(model.cfg.n_layers) for h in range(n_heads)])
    for l, name in enumerate(names):
        pattern = cache[name][0, :, n_vis:, :n_vis].cpu().numpy()  # [head, text, vision]
        for h in range(n_heads):
            fig.add_trace(go.Heatmap(z=pattern[h], x=keys, y=list(TEXT_QUERIES[: pattern.shape[1]]), coloraxis="coloraxis",
                                     hovertemplate="query %{y}<br>key %{x}<br>attention %{z:.3f}<extra></extra>"),
                          row=l + 1, col=h + 1)
    fig.update_yaxes(autorange="reversed")
    fig.update_layout(coloraxis=dict(colorscale=viz.SEQUENTIAL, cmin=0.0, cmax=1.0, colorbar=dict(title="attention")))
    image = task.image_text(tokens[0].cpu())
    per_head = viz._finish(fig, f"Attention of the text queries over the vision tokens, image {image}", 240 * model.cfg.n_layers + 120)

    aggregated = aggregate_attention([cache[n] for n in names], sink=n_vis)[0]  # [q, k]
    rows = {"[BOS] row (predicts the left object)": n_vis, "relation row (predicts the right object)": n_vis + 2}
    height, width = task.cfg.height, task.cfg.width
    if task.pool_tokens is not None and height > 1:
        height = width = int(round(task.pool_tokens**0.5))
    elif task.pool_tokens is not None:
        height, width = 1, task.pool_tokens
    grid = make_subplots(rows=1, cols=2, subplot_titles=list(rows))
    for i, q in enumerate(rows.values()):
        row = aggregated[q, :n_vis].cpu()
        row = (row - row.min()) / (row.max() - row.min()).clamp_min(1e-12)  # min-max, as [B] Fig. 7/8
        grid.add_trace(go.Heatmap(z=row.reshape(height, width).numpy(), coloraxis="coloraxis"), row=1, col=i + 1)
    grid.update_yaxes(autorange="reversed")
    grid.update_layout(coloraxis=dict(colorscale=viz.SEQUENTIAL, colorbar=dict(title="min-max")))
    aggregated_fig = viz._finish(grid, "Aggregated attention over the image ([B]'s aggregation: head mean, [BOS] column"
                                       " removed, layer mean; min-max normalised)", 300 if height == 1 else 420)
    return per_head, aggregated_fig, image


def gradient_figure(gradients: dict[str, dict[str, Any]]) -> go.Figure:
    """Mean of each term at every vision column, per text query (rows) and head (columns) ([L] Fig. 23)."""
    queries = list(gradients)
    n_heads = len(next(iter(next(iter(gradients.values())).values())).profile)
    fig = make_subplots(rows=len(queries), cols=n_heads, shared_xaxes=True,
                        subplot_titles=[f"{q} row, H{h}" for q in queries for h in range(n_heads)])
    for r, q in enumerate(queries):
        for j, (term, g) in enumerate(gradients[q].items()):
            for h in range(n_heads):
                fig.add_trace(go.Scatter(
                    x=list(range(len(g.profile[h]))), y=g.profile[h], mode="lines+markers", name=term, legendgroup=term,
                    showlegend=r == 0 and h == 0, line=dict(color=viz._color(j)),
                    hovertemplate=f"{term} {q} H{h}: ρ={g.monotonicity[h]:+.2f}, slope={g.slope[h]:+.3f}<extra></extra>"),
                    row=r + 1, col=h + 1)
    fig.update_xaxes(title_text="vision column (left to right)", row=len(queries))
    return viz._finish(fig, "Score terms along the vision keys, per text query row, decoder layer 0 ([L] App. O, Fig. 23)",
                       200 * len(queries) + 140)


# ------------------------------------------------------------------------------ page
def build_vlm_report(run: Run, *, title: str | None = None) -> str:
    """The report of a prefix-LM ``run`` as one HTML document (see the module docstring)."""
    model, task, cfg = run.model, run.task, run.cfg
    d = cfg.model.decoder
    split = _relational_split(task)
    title = title or (f"circuits report: prefix-LM toy VLM, {d.n_layers}-layer decoder, {d.vision_source} vision tokens,"
                      f" {task.cfg.n_labels} labels")
    page = _VlmPage()
    page.add(f"<h1>{html.escape(title)}</h1>")
    page.add('<p class="note">The autoregressive toy VLM of [L] App. O (arXiv 2601.12809) and the diagnostics of [B]'
             ' "Beyond Semantics" (arXiv 2503.17349) on it; figure numbers refer to those papers. Generated '
             + html.escape(time.strftime("%Y-%m-%d %H:%M:%S")) + ".</p>")
    keys = [k for k in SECTIONS if k != "training" or run.history]
    page.add("<nav>" + "".join(f'<a href="#{k}">{html.escape(SECTIONS[k])}</a>' for k in keys) + "</nav>")

    accuracies = evaluate(model, task, task.split_names)
    page.section("summary", "Exact match of greedy captions per split ([L] App. O: 100 % / 100 % / 94 % on"
                            " single-object / seen-pair / unseen-pair); label_set: the generated labels are the two"
                            " objects of an unseen pair and the relation token is a relation (order-blind chance on"
                            " pairs: 0.5).")
    page.add(html_table([{"metric": k, "accuracy": v} for k, v in accuracies.items()]))

    page.section("card")
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    frozen = sum(p.numel() for p in model.parameters() if not p.requires_grad)
    card = [{"setting": "parameters (trained / frozen)", "value": f"{trainable} / {frozen}"},
            {"setting": "vision tokens entering the decoder", "value": model.n_vision},
            {"setting": "decoder score terms (layer 0)", "value": " ".join(model.term_names(0))},
            {"setting": "training labels", "value": f"1..{task.cfg.n_pair_labels}"},
            {"setting": "held-out labels", "value": f"{task.cfg.n_pair_labels + 1}..{task.cfg.n_labels}"}]
    meta = model.vision_source_meta
    if meta is not None:
        card += [{"setting": "frozen CLIP encoder", "value": meta["source"]},
                 {"setting": "encoder layers read", "value": ", ".join(map(str, model.vision.layers))},
                 {"setting": "encoder size", "value": f"{meta['n_layers']} layers, d_model {meta['d_model']}"}]
    page.add('<div class="tables">' + html_table(card) + html_table(
        [{"decoder setting": k, "value": json.dumps(v) if isinstance(v, (list, dict)) or v is None else v}
         for k, v in cfg.to_dict()["model"]["decoder"].items()]) + "</div>")
    page.add(f"<details><summary>full config</summary><pre>{html.escape(cfg.to_json())}</pre></details>")

    if run.history:
        page.section("training", "Accuracy of every split and the training loss during training.")
        page.figure(viz.training_curves(run.history))

    norms = token_norms(model, task, split)
    names = ["hook_embed"] + [f"blocks.{l}.hook_resid_pre" for l in range(model.cfg.n_layers)] + \
            [f"blocks.{model.cfg.n_layers - 1}.hook_resid_post"]
    with torch.no_grad():
        _, cache = model.run_with_cache(task.batch(split).tokens.to(model.device), names_filter=names)
    hidden = group_norms_by_layer(cache, model.token_groups(), model.cfg.n_layers)
    page.section("norms", f"Per-token L2 norms on the {split} images: the vision tokens entering the decoder (after the"
                          " projector, the vision_scale c, pooling and norm matching), the text embedding of every"
                          " caption token ([BOS] included), and the decoder's positional rows. [B] measures vision norms"
                          " 10-1000x the text norms in LLaVA (Fig. 3); the skew here is set by vision_scale and vision_norm.")
    page.figure(norm_violin(norms))
    page.add(html_table([{"group": k, **norm_summary(v)} for k, v in norms.items()]))
    page.figure(hidden_norm_lines(hidden))

    ent = model_vision_entropy(model, task, split)
    page.section("entropy", f"[B] Table 4 aggregation on the {split} images with their canonical caption: per layer the"
                            " mean over heads, the [BOS] column removed and rows renormalised, then the mean over layers;"
                            " the text queries' vision rows averaged, then H / log₂ N_vis (LLaVA 1.5: 0.76 on 2DS;"
                            " + Normalize 0.90; + Multilayer 0.72).")
    page.add(html_table([{"row": "Table 4 (all text queries)", "entropy": ent["table4"]}]
                        + [{"row": f"{q} query", "entropy": v} for q, v in zip(TEXT_QUERIES, ent["per_query"])]))
    page.figure(head_entropy_heatmap(ent["per_head"]))

    per_head, aggregated, image = attention_maps(model, task, split)
    page.section("maps", f"One {split} image, {html.escape(image)}, with its canonical caption teacher-forced (B9).")
    page.figure(per_head)
    page.figure(aggregated)

    page.section("gradient", f"Mean of each score term of decoder layer 0 at every vision column, on the rows of the"
                             f" text queries, over the {split} images ([L] Fig. 23: EP and PP show a gradient over the"
                             " vision keys); the table gives each curve's monotonicity (Spearman ρ with the column) and"
                             " slope. On the [BOS] row (always at the same position) EP and PP are not identifiable.")
    if model.pos_embed is None:
        page.add('<p class="note">Not defined for this decoder: it has no learned positional embedding'
                 f" (positional={html.escape(d.positional)}), so no score term has key source P.</p>")
    else:
        gradients = text_vision_gradients(model, task, split)
        page.figure(gradient_figure(gradients))
        page.add(html_table([{"query": q, **row} for q, g in gradients.items() for row in viz.gradient_rows(g)]))

    ablation = text_vision_ablations(model, task, ("single_object", "seen_pair", "unseen_pair"))
    page.section("ablation", "Accuracy after zero-ablating position score terms on the text-query × vision-key block of"
                             " decoder layer 0 only, every head (spec A13's suggested ablation: EP+PP+BP should send"
                             " relational accuracy toward the label-aware chance 0.5 and keep single-object accuracy).")
    page.add(html_table([{"ablated": k, **v} for k, v in ablation.items()]))
    bars = viz.ablation_bars(ablation, metrics=("single_object", "seen_pair", "unseen_pair", "label_set"))
    bars.update_xaxes(title_text="zero-ablated terms (decoder layer 0, text → vision block, all heads)")
    page.figure(bars)

    perm = permutation_test(model, task, n_permutations=N_PERMUTATIONS)
    page.section("permutation", f"Accuracy with the vision tokens entering the decoder randomly permuted"
                                f" ({N_PERMUTATIONS} permutations, mean ± std) or reversed ([B] Table 1: LLaVA loses only"
                                " 0.2-2.74 points); psi: our position-sensitivity index (acc_orig − acc_perm) /"
                                " (acc_orig − 0.5) on the relational splits.")
    page.add(html_table([{"split": k, **v} for k, v in perm.items()]))
    return _document(title, page)
