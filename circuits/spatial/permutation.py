"""The token-permutation test ([B] Sec. 3.1, Table 1; spec B3) and our position-sensitivity index.

[B] permutes the projected vision tokens before the LLM (``image_features[:, randperm(N)]``, one
permutation per forward call shared by the batch). Here the permutation is a hook on
``vision.hook_out`` (what enters the decoder, after pooling and norm matching), applied to
every forward of an evaluation, including each greedy-decoding step.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch
from torch import Tensor

from circuits.errors import CircuitsError
from circuits.evaluation import evaluate

RELATIONAL = ("seen_pair", "unseen_pair")


def position_sensitivity_index(acc_orig: float, acc_perm: float, chance: float = 0.5) -> float:
    """Our PSI (spec B3, CHOICE; [B] v2 names one but does not define it):
    ``(acc_orig - acc_perm) / (acc_orig - chance)``; 1 = permuting destroys everything above
    label-aware chance, 0 = order is ignored. NaN when ``acc_orig <= chance``."""
    return (acc_orig - acc_perm) / (acc_orig - chance) if acc_orig > chance else float("nan")


@contextmanager
def permuted_vision(model, permutation: Tensor) -> Iterator[None]:
    """Within this block every forward of ``model`` (a prefix-LM) sees its vision tokens in the
    order ``permutation`` (a permutation of ``0..n_vision-1``)."""
    n = model.n_vision
    perm = torch.as_tensor(permutation, dtype=torch.long)
    if perm.shape != (n,) or not torch.equal(perm.sort().values, torch.arange(n)):
        raise CircuitsError(f"expected a permutation of 0..{n - 1}, got {perm.tolist()}")
    perm = perm.to(model.device)
    with model.hooks(fwd_hooks=[("vision.hook_out", lambda x, hook: x[:, perm])]):
        yield


def permutation_test(
    model, task, splits: tuple[str, ...] | None = None, n_permutations: int = 20, seed: int = 0
) -> dict[str, dict]:
    """[B] Table 1 on a toy: accuracy per split for the identity, ``n_permutations`` random
    permutations (seeds ``seed..``; mean and std) and the reverse order (the mirror image), with
    Δ = perm - orig and our PSI on the relational splits."""
    splits = splits or task.eval_splits
    n = model.n_vision
    orig = evaluate(model, task, splits)
    runs = []
    for k in range(n_permutations):
        perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed + k))
        with permuted_vision(model, perm):
            runs.append(evaluate(model, task, splits))
    with permuted_vision(model, torch.arange(n - 1, -1, -1)):
        reverse = evaluate(model, task, splits)
    out = {}
    for key in orig:
        values = torch.tensor([r[key] for r in runs]) if runs else torch.tensor([float("nan")])
        row = {"orig": orig[key], "perm_mean": float(values.mean()), "perm_std": float(values.std()) if len(runs) > 1 else 0.0,
               "reverse": reverse[key]}
        row["delta"] = row["perm_mean"] - row["orig"]
        if key in RELATIONAL:
            row["psi"] = position_sensitivity_index(row["orig"], row["perm_mean"])
            row["psi_reverse"] = position_sensitivity_index(row["orig"], row["reverse"])
        out[key] = row
    return out
