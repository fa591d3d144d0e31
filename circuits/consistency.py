"""The consistency condition of App. J (Eqs. 8, 13, 23): does a head prefer the same side of a
label pair whichever label is where?

For a probe input with object A at key position i and B at j (the pooled query attends from
position q), let ``s(X at m)`` be the layer-0 pre-softmax score of the pooled query against a key
holding token X at position m. With

    Δ  = s(A at i) − s(B at j)      (the image as it is)
    Δ' = s(B at i) − s(A at j)      (the same positions, labels swapped)

the head has a consistent directional preference for this (pair, positions) when ``Δ · Δ' > 0``
(Eq. 8 / Eq. 23). Layer-0 scores depend only on (query token, query position, key token, key
position), so ``s`` is read from a table computed once from the model's own weights, LayerNorm
and rotary (`score_table`); the fraction over the probe's inputs is `consistency_fraction`.

* Learned positions (J.1): ``Δ = T_AB + P_ij``, ``Δ' = −T_AB + P_ij``, so ``Δ·Δ' > 0 ⟺ |P_ij| > |T_AB|``
  (Eq. 13): the relational criterion ``|D_pos| > |D_tok|`` of `circuits.stats.head_bias`; without
  LayerNorm the two fractions are equal.
* Rotary positions (J.3): ``s(X at m) = uᵀ R_m (k̃_X + b_K)``; ``key_bias=False`` sets b_K to 0
  (Fig. 19a blue, Mechanism 2 alone) and ``key_direction`` replaces each key content k̃_X by its
  projection ``(v·k̃_X) v`` on a unit vector per head (Fig. 19a green, v = PC1).
"""

from __future__ import annotations

import math

import einops
import torch
from jaxtyping import Float
from torch import Tensor

from circuits.decompose import get_encoder
from circuits.errors import CircuitsError
from circuits.models import HookedCLIP, HookedEncoder
from circuits.tasks import Probe

Model = HookedCLIP | HookedEncoder


def layer0_inputs(enc: HookedEncoder) -> Float[Tensor, "vocab pos d_model"]:
    """What attention layer 0 reads for every (token, position): ``ln1(W_E[t] + W_pos[p])``
    (no W_pos for rotary / no positions)."""
    x = enc.W_E[:, None, :].expand(-1, enc.n_ctx, -1)
    if enc.pos_embed is not None:
        x = x + enc.W_pos[None]
    return enc.blocks[0].ln1(x)


def query_key_tables(
    enc: HookedEncoder, key_bias: bool = True, key_direction: Float[Tensor, "head d_head"] | None = None
) -> tuple[Float[Tensor, "vocab pos head d_head"], Float[Tensor, "vocab pos head d_head"]]:
    """(queries, keys) of layer 0 for every (token, position), after the model's rotary if it
    has one. Queries include b_Q; keys include b_K unless ``key_bias=False``; with
    ``key_direction`` the key content ``x W_K`` (bias excluded) is first projected on it."""
    attn = enc.blocks[0].attn
    x = layer0_inputs(enc)
    q = einops.einsum(x, attn.W_Q, "v p m, h m d -> v p h d") + attn.b_Q
    k = einops.einsum(x, attn.W_K, "v p m, h m d -> v p h d")
    if key_direction is not None:
        k = einops.einsum(k, key_direction, "v p h d, h d -> v p h")[..., None] * key_direction
    if key_bias:
        k = k + attn.b_K
    if attn.rotary is not None:
        positions = torch.arange(enc.n_ctx, device=x.device)
        q, k = attn.rotary(q, positions), attn.rotary(k, positions)
    return q, k


def swap_deltas(
    model: Model, probe: Probe, key_bias: bool = True, key_direction: Float[Tensor, "head d_head"] | None = None
) -> tuple[Float[Tensor, "n head"], Float[Tensor, "n head"]]:
    """(Δ, Δ') of every probe input and head (Eq. 8 / 23): the first object minus the second one,
    as the input is and with the two labels swapped."""
    enc = get_encoder(model, probe.encoder)
    tokens = probe.tokens.to(enc.W_E.device)
    n, n_pos = tokens.shape
    if n_pos != enc.n_ctx:
        raise CircuitsError(f"probe inputs have {n_pos} positions; the {probe.encoder} encoder reads {enc.n_ctx}")
    rows = torch.arange(n, device=tokens.device)
    qpos = (enc.pool_index if probe.query is None else probe.query) % n_pos
    i, j = probe.first.to(tokens.device), probe.second.to(tokens.device)
    a, b = tokens[rows, i], tokens[rows, j]
    with torch.no_grad():
        q_table, k_table = query_key_tables(enc, key_bias, key_direction)
        q = q_table[tokens[:, qpos], qpos]  # [n, h, d]
        scale = math.sqrt(q.shape[-1])

        def s(token: Tensor, pos: Tensor) -> Tensor:
            return (q * k_table[token, pos]).sum(-1) / scale

        return s(a, i) - s(b, j), s(b, i) - s(a, j)


def consistency_fraction(
    model: Model, probe: Probe, key_bias: bool = True, key_direction: Float[Tensor, "head d_head"] | None = None
) -> list[float]:
    """Per head, the fraction of the probe's inputs with ``Δ · Δ' > 0`` (App. J, Eq. 8 / 23;
    Fig. 19a). Layer 0 of the probe's encoder; see the module docstring for the options."""
    delta, swapped = swap_deltas(model, probe, key_bias, key_direction)
    return (delta * swapped > 0).float().mean(0).tolist()
