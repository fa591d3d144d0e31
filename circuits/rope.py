"""How a RoPE vision encoder breaks left-right symmetry (App. J.2-J.3, Figs. 18-19, Eqs. 15-31).

In column-vector form, with ``R_m`` the model's rotary rotation at position m (``R_0 = I`` at the
[CLS] query), ``u = W_Q e_CLS + b_Q`` and ``k̃_X = W_K e_X``, the layer-0 [CLS] score of label X at
position m is ``s = uᵀ R_m (k̃_X + b_K)`` ("Note that the bias is also rotated"). Every rotation
below is the model's own (`circuits.models.positional.Rotary`, applied to a vector placed at
position m), never a hand-built matrix, so the pairing convention is the model's. LayerNorm, if
any, is applied to the token embedding (rotary models add no position to the stream).

* `bias_gradient` (Mechanism 1, Fig. 19b): ``g_ij = uᵀ (R_i − R_j) b_K`` for key positions i < j,
  grouped by distance j − i. The paper: "We observe a clear positional dependence".
* `key_pca` (Fig. 19c): PCA of the key contents ``{k̃_X}`` of the labels, centred; explained
  variance ratios and PC1 ``v1`` per head (sign fixed so that the mean ``v1·k̃_X`` is ≥ 0, the
  c_X > 0 of Eq. 24). The paper: "PC1 captures the dominant variance".
* `effective_rank` (Fig. 19d): ``r_eff(τ) = min{r : Σ_{k≤r} σ_k² / Σ σ_k² ≥ τ}`` of each head's
  W_K; τ was lost, we report 0.9 / 0.95 / 0.99. The paper: "the effective rank is at most 6".
  `pc1_alignment`: ``|cos(v1, top singular vector of W_K on the d_head side)|`` ("aligns with the
  PC1 vector").
* `a_profile` (Mechanism 2, Fig. 19e): ``a_m = uᵀ R_m v1`` over the key positions; its Spearman
  correlation with m and the fraction of pairs i < j whose sign of ``a_i − a_j`` is the majority
  sign. The paper: "several heads have a clear horizontal gradient".
* `rope_analysis`: all of the above plus the three consistency fractions of Fig. 19a
  (`circuits.consistency`: full, ``b_K = 0``, ``b_K = 0`` and keys on PC1) next to the head's
  argmax left/right difference (Fig. 18c).

Conclusion of the paper (J.3.3): "both Mechanism 1 (bias-induced gradient) and Mechanism 2
(learned subspace alignment) emerge in models trained with RoPE".
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Sequence

import einops
import torch
import torch.nn.functional as F
from jaxtyping import Float
from torch import Tensor

from circuits.consistency import consistency_fraction, layer0_inputs
from circuits.decompose import get_encoder
from circuits.errors import CircuitsError
from circuits.models import HookedCLIP, HookedEncoder
from circuits.stats import spearman, head_bias
from circuits.tasks import Probe

Model = HookedCLIP | HookedEncoder
TAUS = (0.9, 0.95, 0.99)


def require_rotary(enc: HookedEncoder, name: str = "vision") -> None:
    """A one-line `CircuitsError` for an encoder without rotary positions, saying what applies."""
    if enc.blocks[0].attn.rotary is None:
        raise CircuitsError(
            f"the {name} encoder has positional={enc.cfg.positional!r}, not 'rotary': the RoPE analyses (App. J.3) "
            "do not apply; for learned positions the consistency condition (App. J.1) is the relational split of "
            "`lenscli bias` (circuits.consistency.consistency_fraction)")


def rotate_at(enc: HookedEncoder, vectors: Float[Tensor, "head d_head"], positions: Tensor) -> Float[Tensor, "pos head d_head"]:
    """``R_m v`` for every position m and head: the model's rotary applied to ``v`` placed at m."""
    placed = vectors[None, None].expand(1, len(positions), -1, -1)
    return enc.blocks[0].attn.rotary(placed, positions)[0]


@torch.no_grad()
def query_vector(enc: HookedEncoder, token: int, position: int) -> Float[Tensor, "head d_head"]:
    """``u = W_Q x + b_Q`` per head, before rotation, for the query ``token`` at ``position`` (the
    pooled [CLS] query in the paper)."""
    attn = enc.blocks[0].attn
    x = layer0_inputs(enc)[token, position]
    return einops.einsum(x, attn.W_Q, "m, h m d -> h d") + attn.b_Q


def _rotated_query(enc: HookedEncoder, u: Tensor, position: int) -> Float[Tensor, "head d_head"]:
    return rotate_at(enc, u, torch.tensor([position], device=u.device))[0]


@torch.no_grad()
def key_contents(enc: HookedEncoder, tokens: Sequence[int]) -> Float[Tensor, "label head d_head"]:
    """``k̃_X = W_K x_X`` per head, bias excluded, before rotation."""
    x = layer0_inputs(enc)[torch.as_tensor(list(tokens), device=enc.W_E.device), 0]
    return einops.einsum(x, enc.blocks[0].attn.W_K, "n m, h m d -> n h d")


@torch.no_grad()
def bias_gradient(
    enc: HookedEncoder, u: Float[Tensor, "head d_head"], positions: Sequence[int], query_position: int = 0
) -> dict[int, tuple[list[float], list[float]]]:
    """Mechanism 1 (Eq. 21, Fig. 19b): ``g_ij = uᵀ (R_i − R_j) b_K / √d_head`` for every i < j in
    ``positions`` (the query rotated to ``query_position``, R_0 = I for [CLS]), grouped by
    distance: ``{j − i: (mean per head, std per head)}``."""
    pos = torch.as_tensor(list(positions), device=enc.W_E.device)
    u = _rotated_query(enc, u, query_position)
    s = (u * rotate_at(enc, enc.blocks[0].attn.b_K, pos)).sum(-1) / math.sqrt(u.shape[-1])  # [pos, h]
    i, j = torch.triu_indices(len(pos), len(pos), offset=1)
    g, dist = s[i] - s[j], pos[j] - pos[i]
    return {int(d): (g[dist == d].mean(0).tolist(), g[dist == d].std(0, correction=0).tolist()) for d in torch.unique(dist)}


def key_pca(keys: Float[Tensor, "label head d_head"]) -> tuple[Float[Tensor, "head k"], Float[Tensor, "head d_head"]]:
    """(explained-variance ratio per principal component, PC1) per head of centred key contents
    (Fig. 19c). PC1's sign makes the mean projection of the uncentred keys ≥ 0 (c_X > 0, Eq. 24)."""
    centred = keys - keys.mean(0)
    _, sv, vh = torch.linalg.svd(einops.rearrange(centred, "n h d -> h n d"), full_matrices=False)
    ratio = sv**2 / (sv**2).sum(-1, keepdim=True)
    v1 = vh[:, 0]
    sign = torch.where(einops.einsum(keys, v1, "n h d, h d -> n h").mean(0) < 0, -1.0, 1.0)
    return ratio, v1 * sign[:, None]


def effective_rank(matrix: Float[Tensor, "*batch rows cols"], tau: float = 0.95) -> Tensor:
    """``min{r : Σ_{k≤r} σ_k² / Σ_k σ_k² ≥ τ}`` (Fig. 19d; τ lost in the paper, default 0.95)."""
    sv = torch.linalg.svdvals(matrix)
    energy = (sv**2).cumsum(-1) / (sv**2).sum(-1, keepdim=True)
    return (energy < tau - 1e-9).sum(-1) + 1


@torch.no_grad()
def pc1_alignment(enc: HookedEncoder, v1: Float[Tensor, "head d_head"]) -> list[float]:
    """``|cos(v1, top singular vector of each head's key map on the d_head side)|`` (Fig. 19d)."""
    _, _, vh = torch.linalg.svd(enc.blocks[0].attn.W_K, full_matrices=False)  # W_K[h]: [d_model, d_head]
    return (F.normalize(vh[:, 0], dim=-1) * F.normalize(v1, dim=-1)).sum(-1).abs().tolist()


@torch.no_grad()
def a_profile(
    enc: HookedEncoder, u: Float[Tensor, "head d_head"], v1: Float[Tensor, "head d_head"], positions: Sequence[int],
    query_position: int = 0,
) -> Float[Tensor, "head pos"]:
    """Mechanism 2 (Eq. 25, Fig. 19e): ``a_m = uᵀ R_m v1`` at each key position m (the query
    rotated to ``query_position``)."""
    pos = torch.as_tensor(list(positions), device=enc.W_E.device)
    u = _rotated_query(enc, u, query_position)
    return (u * rotate_at(enc, v1, pos)).sum(-1).T


def majority_sign_fraction(a: Float[Tensor, "head pos"]) -> list[float]:
    """Per head, the fraction of pairs i < j whose sign of ``a_i − a_j`` is the majority sign."""
    i, j = torch.triu_indices(a.shape[1], a.shape[1], offset=1)
    positive = (a[:, i] - a[:, j] > 0).float().mean(-1)
    return torch.maximum(positive, 1 - positive).tolist()


@dataclass
class RopeAnalysis:
    """`rope_analysis`' result; per-head lists unless said otherwise."""

    consistency: list[float]  # Fig. 19a orange: Eq. 23 with the full logits
    consistency_no_bias: list[float]  # blue: b_K = 0
    consistency_pc1: list[float]  # green: b_K = 0 and keys projected on PC1
    argmax_left_minus_right: list[float]  # |P_left − P_right| of the argmax (Fig. 18c)
    bias_gradient: dict[int, tuple[list[float], list[float]]]  # distance -> (mean, std) per head
    explained_variance: list[list[float]]  # [head][PC]
    effective_rank: dict[float, list[int]]  # tau -> per head
    pc1_alignment: list[float]
    a_profile: list[list[float]]  # [head][key position]
    a_spearman: list[float]
    a_majority_sign: list[float]
    positions: list[int]
    labels: list[int]

    def to_dict(self) -> dict:
        return asdict(self)


@torch.no_grad()
def rope_analysis(model: Model, probe: Probe, labels: Sequence[int] | None = None, taus: Sequence[float] = TAUS) -> RopeAnalysis:
    """Every App. J.3 analysis of a rotary vision encoder's layer 0 on ``probe`` (the paper: the
    unseen-pair split). ``labels`` are the key contents of the PCA (default: the labels that
    appear at the probe's object positions; the paper's CHOICE: object labels only)."""
    enc = get_encoder(model, probe.encoder)
    if probe.encoder != "vision":
        raise CircuitsError("the RoPE analyses read the [CLS] query of the vision encoder; use a vision probe")
    require_rotary(enc, probe.encoder)
    rows = torch.arange(len(probe))
    if labels is None:
        labels = torch.unique(torch.cat([probe.tokens[rows, probe.first], probe.tokens[rows, probe.second]])).tolist()
    positions = (probe.columns >= 0).nonzero()[:, 0].tolist()
    qpos = (enc.pool_index if probe.query is None else probe.query) % enc.n_ctx
    with torch.no_grad():
        u = query_vector(enc, int(probe.tokens[0, qpos]), qpos)
        keys = key_contents(enc, labels)
        ratio, v1 = key_pca(keys)
        a = a_profile(enc, u, v1, positions, qpos)
        bias = head_bias(model, probe, 0)
        m = torch.tensor(positions, dtype=a.dtype)
        return RopeAnalysis(
            consistency=consistency_fraction(model, probe),
            consistency_no_bias=consistency_fraction(model, probe, key_bias=False),
            consistency_pc1=consistency_fraction(model, probe, key_bias=False, key_direction=v1),
            argmax_left_minus_right=[abs(x - y) for x, y in zip(bias.argmax_first, bias.argmax_second)],
            bias_gradient=bias_gradient(enc, u, positions, qpos),
            explained_variance=ratio.tolist(),
            effective_rank={t: effective_rank(enc.blocks[0].attn.W_K, t).tolist() for t in taus},
            pc1_alignment=pc1_alignment(enc, v1),
            a_profile=a.tolist(),
            a_spearman=spearman(a[None], m)[0].tolist(),
            a_majority_sign=majority_sign_fraction(a),
            positions=positions,
            labels=list(labels),
        )
