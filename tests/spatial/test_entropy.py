"""Normalised attention entropy ([B] Sec. 7) and its aggregation."""

from __future__ import annotations

import torch

from circuits.spatial.entropy import aggregate_attention, normalized_entropy, vision_entropy


def test_a_uniform_row_has_entropy_one() -> None:
    torch.testing.assert_close(normalized_entropy(torch.full((3, 10), 0.1)), torch.ones(3))


def test_a_one_hot_row_has_entropy_zero() -> None:
    row = torch.zeros(10)
    row[4] = 1.0
    assert float(normalized_entropy(row)) < 1e-7


def test_unnormalised_rows_are_renormalised_first() -> None:
    torch.testing.assert_close(normalized_entropy(torch.tensor([2.0, 2.0])), torch.tensor(1.0))


def test_aggregation_averages_heads_drops_the_sink_column_then_averages_layers() -> None:
    # one layer, two heads, two queries, three keys; sink = key 0
    p = torch.tensor([[[[1.0, 0.0, 0.0], [0.5, 0.5, 0.0]], [[1.0, 0.0, 0.0], [0.5, 0.0, 0.5]]]])
    agg = aggregate_attention([p], sink=0)
    torch.testing.assert_close(agg[0, 0], torch.tensor([1.0, 0.0, 0.0]))  # the sink's own row is kept
    torch.testing.assert_close(agg[0, 1], torch.tensor([0.0, 0.5, 0.5]))  # 0.5 to the sink removed


def test_table4_entropy_is_of_the_mean_row_not_the_mean_entropy() -> None:
    agg = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])  # two one-hot rows on different vision keys
    out = vision_entropy(agg, slice(0, 2), [0, 1])
    torch.testing.assert_close(out["table4"], torch.ones(1))  # their mean is uniform
    assert out["per_query"].max() < 1e-7
