"""Cross-Modality Balance ([B] v2 code; spec B11, an extension)."""

from __future__ import annotations

import torch
from conftest import tiny_vlm_config

from circuits.models import HookedPrefixLM
from circuits.spatial.balance import head_modality_balance, modality_balance, modality_shares, model_modality_balance
from circuits.spatial.sweep import vision_attention_mass
from circuits.tasks import build_task


def test_balance_of_hand_built_rows_is_the_direct_ratio() -> None:
    # keys: 3 vision, 2 text; two query rows
    agg = torch.tensor([[[0.1, 0.2, 0.3, 0.4, 0.0], [0.0, 0.0, 0.3, 0.2, 0.5]]])
    out = modality_balance(agg, slice(0, 3), slice(3, 5), [0, 1])
    torch.testing.assert_close(out["share_v"], torch.tensor([[0.6 / 1.0, 0.3 / 1.0]]))
    torch.testing.assert_close(out["pref"], torch.tensor([[(0.6 - 0.4) / 1.0, (0.3 - 0.7) / 1.0]]))


def test_pref_is_twice_the_share_minus_one() -> None:
    rows = torch.rand(4, 3, 9)
    out = modality_shares(rows, slice(0, 5), [5, 6, 8])
    torch.testing.assert_close(out["pref"], 2 * out["share_v"] - 1)


def test_a_system_span_is_in_neither_sum_and_has_its_own_share() -> None:
    row = torch.tensor([0.2, 0.3, 0.1, 0.4])  # vision {0}, system {1}, text {2, 3}
    out = modality_shares(row, [0], [2, 3], system=[1])
    torch.testing.assert_close(out["share_v"], torch.tensor(0.2 / 0.7))
    torch.testing.assert_close(out["system_share"], torch.tensor(0.3 / 1.0))


def test_per_head_balance_drops_the_sink_column_except_in_the_sinks_own_row() -> None:
    # one layer, one image, two heads; keys: vision {0, 1}, sink 2, text {3}; queries 2 (the sink) and 3
    p = torch.tensor([[[[0.0] * 4, [0.0] * 4, [0.25, 0.25, 0.5, 0.0], [0.2, 0.2, 0.4, 0.2]],
                       [[0.0] * 4, [0.0] * 4, [0.5, 0.0, 0.5, 0.0], [0.3, 0.0, 0.1, 0.6]]]])
    out = head_modality_balance([p], [0, 1], [2, 3], [2, 3], sink=2)
    head0 = (0.5 / 1.0 + 0.4 / 0.6) / 2  # own row: sink counts as text; other row: sink dropped
    head1 = (0.5 / 1.0 + 0.3 / 0.9) / 2
    torch.testing.assert_close(out["share_v"], torch.tensor([[head0, head1]]))


def test_the_bos_rows_share_of_a_prefix_lm_is_its_attention_mass_on_vision() -> None:
    cfg = tiny_vlm_config()
    task = build_task(cfg)
    model = HookedPrefixLM.for_task(cfg, task).eval()
    out = model_modality_balance(model, task, "seen_pair")
    assert out["queries"] == [0, 1, 2, 3]  # the rows that predict w1 w2 w3 [EOT]
    alpha = vision_attention_mass(model, task.batch(task["seen_pair"]).tokens)  # [layer, head, text]
    assert abs(out["per_query"][0] - float(alpha[:, :, 0].mean())) < 1e-5
