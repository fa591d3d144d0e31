"""Specification of `circuits.text_bias` (Sec. 6.1, Fig. 6)."""

from __future__ import annotations

import pytest
import torch

from circuits.text_bias import text_attention_bias
from conftest import clip_for


@pytest.fixture
def model_and_captions(make_tiny_cfg):
    model, world = clip_for(make_tiny_cfg())
    return model, world.probe("unseen_pair", "text").tokens


def test_mean_and_std_are_those_of_the_eot_attention_rows(model_and_captions):
    model, captions = model_and_captions
    _, cache = model.text.run_with_cache(captions)
    rows = cache["pattern", 0][:, :, -1, :]
    out = text_attention_bias(model, captions)
    assert torch.allclose(torch.tensor(out.mean), rows.mean(0), atol=1e-6)
    assert torch.allclose(torch.tensor(out.std), rows.std(0, correction=0), atol=1e-6)


def test_bias_and_sign_agreement_of_a_head_attending_only_to_the_subject(model_and_captions):
    model, captions = model_and_captions
    with torch.no_grad():  # head 0 reads a large mark on position 0 (the subject); head 1 scores every key 0
        attn, text = model.text.blocks[0].attn, model.text
        for p in (attn.W_Q, attn.W_K, attn.b_Q, attn.b_K):
            p.zero_()
        text.embed.W_E[:, 0] = 0.0
        text.pos_embed.W_pos[:, 0] = 0.0
        text.pos_embed.W_pos[0, 0] = 100.0
        attn.b_Q[0, 0], attn.W_K[0, 0, 0] = 1.0, 1.0
    out = text_attention_bias(model, captions)
    assert out.bias[0] == pytest.approx(1.0, abs=1e-4)
    assert out.sign_agreement[0] == 1.0
    assert out.bias[1] == pytest.approx(0.0, abs=1e-6)
    assert out.mean[1] == pytest.approx([0.25] * 4)
