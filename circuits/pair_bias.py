"""Per-label-pair argmax proportions and the App. G picture of a model that does not generalize.

The paper (App. G): "No head exhibits a consistent left or right bias: proportions are near
chance and vary across labels"; "for head 3, the probabilities for both left and right are low,
implying that the CLS token frequently attends most to background tokens (label 0)"; "The
profiles at the CLS row show no clear monotonic pattern along the horizontal axis."

* `argmax_by_pair`: per head and per ordered label pair (A left, B right) of a probe, the
  fraction of inputs whose pooled-row attention maximum falls on the left object, the right
  object, or elsewhere (background or [CLS]).
* `app_g_summary`: the overall proportions, their spread across pairs, the EP monotonicity
  per head, and the spec's acceptance (a CHOICE; the paper gives none): every head has
  ``|P_left − P_right| < 0.2`` and ``|Spearman(EP row)| < 0.5`` (``no_consistent_bias``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from jaxtyping import Float
from torch import Tensor

from circuits.models import HookedCLIP, HookedEncoder
from circuits.models.terms import E, P, term_name
from circuits.stats import probe_row, term_gradient
from circuits.tasks import Probe

Model = HookedCLIP | HookedEncoder


@torch.no_grad()
def argmax_by_pair(model: Model, probe: Probe, layer: int = 0) -> tuple[list[tuple[int, int]], Float[Tensor, "pair head 3"]]:
    """(the ordered label pairs, proportions [pair, head, (left, right, other)]) of where each
    head's pooled-row attention maximum falls (App. G)."""
    _, row = probe_row(model, probe, layer)
    argmax = row.pattern.argmax(-1).cpu()  # [n, head]
    rows = torch.arange(len(probe))
    left_label, right_label = probe.tokens[rows, probe.first], probe.tokens[rows, probe.second]
    where = torch.where(argmax == probe.first[:, None], 0, torch.where(argmax == probe.second[:, None], 1, 2))
    pairs, group = torch.unique(torch.stack([left_label, right_label], -1), dim=0, return_inverse=True)
    counts = torch.zeros(len(pairs), argmax.shape[1], 3)
    counts.index_put_((group[:, None].expand_as(where), torch.arange(argmax.shape[1]).expand_as(where), where),
                      torch.ones(where.shape), accumulate=True)
    return [tuple(p) for p in pairs.tolist()], counts / counts.sum(-1, keepdim=True)


@dataclass
class AppG:
    left: list[float]  # per head, over all inputs
    right: list[float]
    other: list[float]
    pair_std_left: list[float]  # per head: std across label pairs of the per-pair left proportion
    pair_std_right: list[float]
    ep_monotonicity: list[float] | None  # Spearman of the EP term along the pooled row (None: no EP term)
    no_consistent_bias: bool  # every head |left - right| < bias_threshold and |EP Spearman| < monotonic_threshold
    pairs: list[tuple[int, int]]
    per_pair: list[list[list[float]]]  # [pair][head][left, right, other]

    def to_dict(self) -> dict:
        return asdict(self)


def app_g_summary(model: Model, probe: Probe, bias_threshold: float = 0.2, monotonic_threshold: float = 0.5) -> AppG:
    """App. G statistics of ``model`` on ``probe`` (the paper: the unseen-pair split)."""
    pairs, per_pair = argmax_by_pair(model, probe)
    _, row = probe_row(model, probe, 0)
    argmax = row.pattern.argmax(-1).cpu()
    is_left, is_right = argmax == probe.first[:, None], argmax == probe.second[:, None]
    left, right, other = (m.float().mean(0) for m in (is_left, is_right, ~is_left & ~is_right))
    ep = term_name(E, P)
    mono = term_gradient(model, probe, 0, terms=(ep,))[ep].monotonicity if ep in row.terms else None
    ok = bool(((left - right).abs() < bias_threshold).all()) and (mono is None or all(abs(m) < monotonic_threshold for m in mono))
    return AppG(left.tolist(), right.tolist(), other.tolist(), per_pair[..., 0].std(0, correction=0).tolist(),
                per_pair[..., 1].std(0, correction=0).tolist(), mono, ok, pairs, per_pair.tolist())
