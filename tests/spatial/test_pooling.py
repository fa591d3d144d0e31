"""Spatial compression retrained per pooled size ([B] Sec. 3.2; spec B4)."""

from __future__ import annotations

import pytest
import torch
from conftest import tiny_vlm_config

from circuits.config import RunConfig, WorldConfig
from circuits.errors import CircuitsError
from circuits.spatial.pooling import pool_sizes, pooling_sweep, same_bin
from circuits.tasks import build_task


def test_pool_sizes_are_the_divisors_of_the_grid_largest_first() -> None:
    assert pool_sizes(WorldConfig(width=10)) == (10, 5, 2, 1)
    assert pool_sizes(WorldConfig(width=4, height=4)) == (16, 4, 1)
    assert pool_sizes(WorldConfig(width=6, height=6)) == (36, 9, 4, 1)


def test_same_bin_marks_pairs_whose_pixels_fall_in_one_pooled_bin() -> None:
    task = build_task(tiny_vlm_config(**{"model.decoder.pool_tokens": 3}))  # 6 pixels -> bins {0,1} {2,3} {4,5}
    pos = task["seen_pair"].positions
    assert torch.equal(same_bin(task, "seen_pair"), pos[:, 0] // 2 == pos[:, 1] // 2)
    unpooled = build_task(tiny_vlm_config())
    assert not same_bin(unpooled, "seen_pair").any()
    with pytest.raises(CircuitsError, match="no two-object images"):
        same_bin(task, "single_object")


def test_a_sweep_retrains_per_size_and_one_token_cannot_order_a_pair() -> None:
    cfg = tiny_vlm_config(**{"train.steps": 10, "train.eval_every": 10})
    rows = pooling_sweep(cfg, sizes=(6, 1))
    assert [(r["pool_tokens"], r["n_vision"]) for r in rows] == [(6, 6), (1, 1)]
    full, one = rows
    assert full["seen_pair.n_same_bin"] == 0 and one["seen_pair.n_diff_bin"] == 0
    # one token = the mean of every pixel: a pair and its mirror image look the same, and the
    # seen-pair split holds as many of each orientation, so at most half can be right
    assert one["seen_pair"] <= 0.5 + 1e-6 and one["seen_pair.same_bin"] == one["seen_pair"]
    with pytest.raises(CircuitsError, match="set model.kind=prefix_lm"):
        pooling_sweep(RunConfig(), sizes=(1,))
