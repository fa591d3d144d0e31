"""Batch samplers: endless iterators of batches over tensors already on the device.

A batch is any object `take_rows` can index along its first axis: a tensor, a tuple / list /
dict of tensors, or an object with a ``take(index)`` method (e.g. `ClipBatch`, which keeps its
texts and selects images). Sampling draws one index tensor per step; no per-sample Python.
"""

from __future__ import annotations

import itertools
from typing import Any, Iterator

import torch
from torch import Tensor


def take_rows(batch: Any, index: Tensor) -> Any:
    """``batch`` restricted to rows ``index`` (of every tensor in it, or by ``batch.take``)."""
    if isinstance(batch, Tensor):  # (before take: Tensor.take indexes the flattened tensor)
        return batch[index]
    if hasattr(batch, "take"):
        return batch.take(index)
    if isinstance(batch, dict):
        return {k: take_rows(v, index) for k, v in batch.items()}
    if isinstance(batch, (tuple, list)):
        return type(batch)(take_rows(v, index) for v in batch)
    raise TypeError(f"cannot take rows of a {type(batch).__name__}; give it a take(index) method")


def _first_tensor(batch: Any) -> Tensor:
    """The first tensor found in ``batch`` (depth first)."""
    if isinstance(batch, Tensor):
        return batch
    parts = batch.values() if isinstance(batch, dict) else batch if isinstance(batch, (tuple, list)) else vars(batch).values()
    for part in parts:
        if isinstance(part, (Tensor, dict, tuple, list)) or hasattr(part, "__dict__"):
            try:
                return _first_tensor(part)
            except LookupError:
                continue
    raise LookupError("the batch holds no tensor")


def n_rows(batch: Any) -> int:
    """Rows of ``batch``: ``len(batch)`` if it defines one (and is no container), else its first tensor's."""
    if hasattr(batch, "__len__") and not isinstance(batch, (tuple, list, dict)):
        return len(batch)
    return len(_first_tensor(batch))


def full_batch(batch: Any) -> Iterator[Any]:
    """The same whole batch every step."""
    return itertools.repeat(batch)


def minibatches(batch: Any, size: int, *, seed: int, n: int | None = None) -> Iterator[Any]:
    """Random minibatches of ``size`` distinct rows of the batch's ``n`` rows (`n_rows`), every step.

    The indices come from a CPU ``torch.Generator`` seeded with ``seed`` (the same sequence on
    every device) and are moved to the batch's device.
    """
    n = n_rows(batch) if n is None else n
    device = _first_tensor(batch).device
    generator = torch.Generator().manual_seed(seed)
    while True:
        yield take_rows(batch, torch.randperm(n, generator=generator)[:size].to(device))


def batches(batch: Any, size: int | None, *, seed: int) -> Iterator[Any]:
    """`full_batch` when ``size`` is None or covers the data, else seeded `minibatches`."""
    if size is None or size >= n_rows(batch):
        return full_batch(batch)
    return minibatches(batch, size, seed=seed)
