"""Specification of `circuits.align` (Sec. 6.2, Fig. 7): orthogonal Procrustes on token
embeddings, held-out matching, and the permutation / initialisation nulls."""

from __future__ import annotations

import math

import pytest
import torch

from circuits.align import (
    alignment_of_embeddings,
    cosine_matrix,
    match_metrics,
    procrustes,
    rotation_alignment,
)
from circuits.errors import CircuitsError
from conftest import clip_for


def random_orthogonal(d: int, seed: int) -> torch.Tensor:
    q, _ = torch.linalg.qr(torch.randn(d, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64))
    return q


def test_procrustes_recovers_a_planted_rotation():
    a = torch.randn(15, 8, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    q = random_orthogonal(8, 2)
    assert (procrustes(a, a @ q) - q).abs().max() < 1e-5


def test_procrustes_of_a_2d_rotation_by_a_known_angle():
    angle = 0.7
    rot = torch.tensor([[math.cos(angle), math.sin(angle)], [-math.sin(angle), math.cos(angle)]], dtype=torch.float64)
    a = torch.tensor([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0]], dtype=torch.float64)
    assert torch.allclose(procrustes(a, a @ rot), rot, atol=1e-12)


def test_with_fewer_rows_than_dimensions_procrustes_maps_the_fitted_span_and_zeroes_its_complement():
    a = torch.randn(3, 8, generator=torch.Generator().manual_seed(8), dtype=torch.float64)
    q = random_orthogonal(8, 9)
    r = procrustes(a, a @ q)
    assert torch.allclose(a @ r, a @ q, atol=1e-10)
    outside = torch.linalg.svd(a).Vh[3:]  # rows orthogonal to every fitted row
    assert torch.allclose(outside @ r, torch.zeros(5, 8, dtype=torch.float64), atol=1e-10)


def test_proper_procrustes_returns_a_rotation_when_the_best_fit_is_a_reflection():
    a = torch.randn(10, 4, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    reflection = torch.diag(torch.tensor([1.0, 1.0, 1.0, -1.0], dtype=torch.float64))
    assert torch.linalg.det(procrustes(a, a @ reflection)) == pytest.approx(-1.0)
    assert torch.linalg.det(procrustes(a, a @ reflection, proper=True)) == pytest.approx(1.0)


def test_planted_rotation_aligns_held_out_rows_perfectly_and_beats_the_permutation_null():
    a = torch.randn(20, 8, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    out = alignment_of_embeddings(a, a @ random_orthogonal(8, 5), range(15), range(15, 20), n_permutations=50)
    assert out["rotated"]["diagonal"] == pytest.approx(1.0, abs=1e-6)
    assert out["rotated"]["top1"] == 1.0
    assert out["permutation"]["p"] == pytest.approx(1 / 51)


def test_a_rotation_fits_15_independent_random_pairs_in_128_dimensions_closely():
    gen = torch.Generator().manual_seed(6)
    a, b = torch.randn(20, 128, generator=gen), torch.randn(20, 128, generator=gen)
    out = alignment_of_embeddings(a, b, range(15), range(15, 20), n_permutations=0)
    assert out["rotated"]["fit_residual"] < 0.35  # unrelated unit vectors are sqrt(2) apart before the fit


def test_independent_random_embeddings_show_no_held_out_alignment_and_uniform_p_values():
    gen = torch.Generator().manual_seed(6)
    outs = [alignment_of_embeddings(torch.randn(20, 128, generator=gen), torch.randn(20, 128, generator=gen),
                                    range(15), range(15, 20), n_permutations=100, seed=s) for s in range(20)]
    assert abs(sum(o["rotated"]["gap"] for o in outs) / 20) < 0.03
    assert sum(o["permutation"]["p"] < 0.05 for o in outs) <= 3  # about 1 in 20 under the null


def test_match_metrics_of_a_known_matrix():
    c = torch.tensor([[0.9, 0.1, 0.2], [0.3, 0.5, 0.7], [0.0, 0.1, 0.6]])
    m = match_metrics(c)
    assert m["diagonal"] == pytest.approx(2.0 / 3)
    assert m["off_diagonal"] == pytest.approx(1.4 / 6)
    assert m["top1"] == pytest.approx(2 / 3)


def test_cosine_matrix_ignores_norms():
    a = torch.tensor([[3.0, 0.0], [0.0, 1.0]])
    assert torch.allclose(cosine_matrix(a, 5 * a), torch.eye(2))


def test_rotation_alignment_reads_the_models_token_embeddings(make_tiny_cfg):
    model, world = clip_for(make_tiny_cfg(n_labels=20, n_pair_labels=17))  # 17 fit labels >= d_model 16
    q = random_orthogonal(16, 7).float()
    with torch.no_grad():
        labels = torch.arange(1, world.cfg.n_labels + 1)
        model.text.embed.W_E[labels] = model.vision.embed.W_E[labels] @ q
    out = rotation_alignment(model, world.train_labels, world.heldout_labels, n_permutations=20)
    assert out.rotated["diagonal"] == pytest.approx(1.0, abs=1e-5)
    assert out.raw["diagonal"] < 0.9


def test_fewer_than_two_held_out_labels_is_an_error(make_tiny_cfg):
    model, _ = clip_for(make_tiny_cfg())
    with pytest.raises(CircuitsError, match="at least 2 held-out labels"):
        rotation_alignment(model, [1, 2, 3], [4])
