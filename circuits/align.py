"""Rotation alignment of vision and text token embeddings (Sec. 6.2, Fig. 7).

The paper: "Fitting a rotation matrix to align a subset (label: [1–15]) of token embeddings …
and evaluating on a validation set (label: [16–20]), we observe markedly stronger alignment
(Fig. 7(b))"; "token representations in the text and image encoders align modulo a rotational
degree of freedom".

With ``A_k`` the vision embedding of pixel value k and ``B_k`` the text embedding of label word
k (the same number on both sides, `circuits.data.vocab`):

* `procrustes`: the orthogonal R minimising ``‖A_F R − B_F‖_F`` on the fit labels F;
* `cosine_matrix` / `match_metrics`: ``C[a, b] = cos(A_a R, B_b)`` on held-out labels and its
  diagonal / off-diagonal means, their gap and top-1 matching;
* `rotation_alignment`: all of it for a CLIP pair, raw and rotated, with the two nulls that make
  a held-out number meaningful: a permutation null (refit on random re-pairings of F; p-value of
  the held-out diagonal mean) and, through ``init_model``, the same procedure at initialisation.

With 15 pairs in 128 dimensions a rotation fits *any* 15 pairs almost perfectly, so only the
held-out numbers and the nulls say anything. Choices where the paper is silent (all parameters):
``unit=True`` (rows L2-normalised before fitting, as evaluation is cosine), ``proper=False``
(any orthogonal R; ``proper=True`` forces det R = +1, a rotation in the strict sense),
``direction="vision_to_text"`` (fit ``A R ≈ B``; the paper's direction is lost), no centring.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Sequence

import torch
import torch.nn.functional as F
from jaxtyping import Float
from torch import Tensor

from circuits.errors import CircuitsError
from circuits.models import HookedCLIP

Direction = Literal["vision_to_text", "text_to_vision"]


def procrustes(
    source: Float[Tensor, "*batch n d_src"], target: Float[Tensor, "*batch n d_tgt"], proper: bool = False
) -> Float[Tensor, "*batch d_src d_tgt"]:
    """Orthogonal Procrustes (Sec. 6.2, Fig. 7b): ``R = U Vᵀ`` with ``U Σ Vᵀ = svd(sourceᵀ target)``,
    the R with orthonormal singular vectors minimising ``‖source R − target‖_F``. Batched.

    With fewer rows than dimensions (the paper's 15 labels in 128 dimensions) ``sourceᵀ target``
    has rank n and the minimiser is not unique: any completion on the orthogonal complement of
    the fitted rows is as good, and a full SVD would pick one arbitrarily. We return the unique
    minimum-norm solution instead, the partial isometry ``Q_s U_k V_kᵀ Q_tᵀ`` from the span of
    the source rows onto the span of the target rows (thin QR of both, SVD of the n x n core),
    which is zero on the complement. With n ≥ d it is the usual orthogonal R. ``proper`` forces
    ``det R = +1`` (``R = U diag(1, …, 1, det(U Vᵀ)) Vᵀ``) when R is square and of full rank;
    otherwise a determinant is not defined by the fit and ``proper`` changes nothing.
    """
    q_s, t_s = torch.linalg.qr(source.transpose(-2, -1))  # [.., d_s, k], [.., k, n]
    q_t, t_t = torch.linalg.qr(target.transpose(-2, -1))
    u, _, vh = torch.linalg.svd(t_s @ t_t.transpose(-2, -1), full_matrices=False)
    if proper and q_s.shape[-1] == q_s.shape[-2] == q_t.shape[-2] == q_t.shape[-1]:
        sign = torch.linalg.det(q_s @ u @ vh @ q_t.transpose(-2, -1)).sign()
        u = torch.cat([u[..., :-1], u[..., -1:] * sign[..., None, None]], dim=-1)
    return q_s @ u @ vh @ q_t.transpose(-2, -1)


def cosine_matrix(a: Float[Tensor, "n d"], b: Float[Tensor, "m d"]) -> Float[Tensor, "n m"]:
    """``C[i, j] = cos(a_i, b_j)`` (Fig. 7a, b)."""
    return F.normalize(a, dim=-1) @ F.normalize(b, dim=-1).T


def match_metrics(c: Float[Tensor, "n n"]) -> dict[str, float]:
    """Of a square cosine matrix whose diagonal pairs the same label (Fig. 7): mean diagonal, mean
    off-diagonal, their gap, and top-1 matching (fraction of rows whose maximum is on the diagonal)."""
    n = c.shape[0]
    eye = torch.eye(n, dtype=torch.bool, device=c.device)
    diag, off = c[eye].mean(), c[~eye].mean()
    return {"diagonal": diag.item(), "off_diagonal": off.item(), "gap": (diag - off).item(),
            "top1": (c.argmax(-1) == torch.arange(n, device=c.device)).float().mean().item()}


@dataclass
class Alignment:
    """`rotation_alignment`'s result: labels, cosine matrices (rows: vision label a, columns:
    text label b, both in ``eval_labels`` order) and their metrics, raw and rotated."""

    fit_labels: list[int]
    eval_labels: list[int]
    direction: str
    unit: bool
    proper: bool
    raw: dict[str, float]  # match_metrics of C_raw on the held-out labels
    rotated: dict[str, float]  # match_metrics of C_rot on the held-out labels, + top1_all, fit_residual
    raw_matrix: list[list[float]]
    rotated_matrix: list[list[float]]
    permutation: dict[str, float] = field(default_factory=dict)  # n, null mean / std, p of the diagonal mean
    init: dict[str, dict[str, float]] | None = None  # the same procedure at initialisation (raw, rotated)

    def to_dict(self) -> dict:
        from dataclasses import asdict

        return asdict(self)


def token_embeddings(model: HookedCLIP, labels: Sequence[int]) -> tuple[Float[Tensor, "n d_v"], Float[Tensor, "n d_t"]]:
    """``(A, B)``: rows ``W_E^vis[k]`` and ``W_E^txt[k]`` for each label k (Sec. 6.2)."""
    index = torch.as_tensor(list(labels), dtype=torch.long, device=model.device)
    return model.vision.W_E.detach()[index].float(), model.text.W_E.detach()[index].float()


def _fit_and_score(
    a: Tensor, b: Tensor, fit: Tensor, held: Tensor, direction: Direction, proper: bool
) -> tuple[Tensor, Tensor, float]:
    """(C_rot on held-out labels [held, held], C_rot of held-out vision rows against every label, fit residual)."""
    if direction == "vision_to_text":
        r = procrustes(a[fit], b[fit], proper)
        rotated_a, rotated_b = a @ r, b
    else:
        r = procrustes(b[fit], a[fit], proper)
        rotated_a, rotated_b = a, b @ r
    residual = (rotated_a[fit] - rotated_b[fit]).norm() / rotated_b[fit].norm()
    full = cosine_matrix(rotated_a[held], rotated_b)
    return full[:, held], full, residual.item()


def permutation_null(
    a: Float[Tensor, "n d"], b: Float[Tensor, "n d"], fit: Sequence[int], held: Sequence[int],
    n_permutations: int = 200, seed: int = 0, direction: Direction = "vision_to_text", proper: bool = False,
) -> Float[Tensor, " n_permutations"]:
    """Held-out diagonal mean after refitting R on random re-pairings of the fit rows (``A_F``
    against a permutation of ``B_F``), one value per permutation (Sec. 6.2 null; spec A7).
    Rows are indices into ``a`` / ``b``; all permutations are fitted in one batched SVD."""
    fit_t, held_t = torch.as_tensor(list(fit)), torch.as_tensor(list(held))
    gen = torch.Generator().manual_seed(seed)
    perms = torch.stack([torch.randperm(len(fit_t), generator=gen) for _ in range(n_permutations)])
    src, tgt = (a, b) if direction == "vision_to_text" else (b, a)
    r = procrustes(src[fit_t][None].expand(n_permutations, -1, -1), tgt[fit_t][perms.to(a.device)], proper)  # [p, d, d]
    moved = F.normalize(src[held_t] @ r, dim=-1)  # [p, held, d]
    return (moved * F.normalize(tgt[held_t], dim=-1)).sum(-1).mean(-1)


def alignment_of_embeddings(
    a: Float[Tensor, "n d_v"], b: Float[Tensor, "n d_t"], fit: Sequence[int], held: Sequence[int], *,
    unit: bool = True, proper: bool = False, direction: Direction = "vision_to_text",
    n_permutations: int = 200, seed: int = 0,
) -> dict:
    """The whole procedure on two embedding tables whose row i is the same label on both sides;
    ``fit`` / ``held`` are row indices (at least 2 each). Returns the fields of `Alignment`
    but the label lists."""
    if len(held) < 2:
        raise CircuitsError(f"rotation alignment needs at least 2 held-out labels to compare (got {len(held)})")
    if len(fit) < 2:
        raise CircuitsError(f"rotation alignment needs at least 2 labels to fit on (got {len(fit)})")
    if direction not in ("vision_to_text", "text_to_vision"):
        raise CircuitsError(f"unknown direction {direction!r}; use vision_to_text or text_to_vision")
    if unit:
        a, b = F.normalize(a, dim=-1), F.normalize(b, dim=-1)
    fit_t, held_t = torch.as_tensor(list(fit)), torch.as_tensor(list(held))
    raw = cosine_matrix(a[held_t], b[held_t]) if a.shape[1] == b.shape[1] else None
    rot, full, residual = _fit_and_score(a, b, fit_t, held_t, direction, proper)
    rotated = {**match_metrics(rot), "top1_all": (full.argmax(-1) == held_t.to(full.device)).float().mean().item(),
               "fit_residual": residual}
    out = {"raw": match_metrics(raw) if raw is not None else {}, "rotated": rotated,
           "raw_matrix": raw.tolist() if raw is not None else [], "rotated_matrix": rot.tolist()}
    if n_permutations:
        null = permutation_null(a, b, fit, held, n_permutations, seed, direction, proper)
        observed = rotated["diagonal"]
        out["permutation"] = {"n": n_permutations, "null_mean": null.mean().item(), "null_std": null.std().item(),
                              "p": (1 + (null >= observed).sum().item()) / (1 + n_permutations)}
    return out


def rotation_alignment(
    model: HookedCLIP,
    fit_labels: Sequence[int],
    eval_labels: Sequence[int],
    *,
    unit: bool = True,
    proper: bool = False,
    direction: Direction = "vision_to_text",
    n_permutations: int = 200,
    seed: int = 0,
    init_model: HookedCLIP | None = None,
) -> Alignment:
    """Fig. 7: fit R on ``fit_labels`` (the paper: the training labels 1..15), score raw and
    rotated cosine matrices on ``eval_labels`` (16..20), with the permutation null and, if
    ``init_model`` is given (the same config at step 0, e.g. `initial_model`), the same
    procedure on its embeddings. See the module docstring for the choices."""
    fit_labels, eval_labels = list(fit_labels), list(eval_labels)
    if len(eval_labels) < 2:
        raise CircuitsError(
            f"rotation alignment needs at least 2 held-out labels to compare (got {len(eval_labels)}); "
            "train with fewer world.n_pair_labels or pass more eval labels")
    if set(fit_labels) & set(eval_labels):
        raise CircuitsError(f"fit and eval labels overlap: {sorted(set(fit_labels) & set(eval_labels))}")
    labels = fit_labels + eval_labels
    fit, held = range(len(fit_labels)), range(len(fit_labels), len(labels))
    kwargs = dict(unit=unit, proper=proper, direction=direction)
    result = alignment_of_embeddings(*token_embeddings(model, labels), fit, held, **kwargs,
                                     n_permutations=n_permutations, seed=seed)
    init = None
    if init_model is not None:
        at_init = alignment_of_embeddings(*token_embeddings(init_model, labels), fit, held, **kwargs,
                                          n_permutations=n_permutations, seed=seed)
        init = {"raw": at_init["raw"], "rotated": at_init["rotated"], "permutation": at_init.get("permutation", {})}
    return Alignment(fit_labels, eval_labels, direction, unit, proper, **result, init=init)


def initial_model(cfg, task) -> HookedCLIP:
    """The CLIP pair of ``cfg`` at initialisation (step 0: the same seed, no training)."""
    return HookedCLIP.for_task(cfg, task).eval()
