"""Specification of `circuits.text_bias` (Sec. 6.1, Fig. 6)."""

from __future__ import annotations

import pytest
import torch

from circuits.errors import CircuitsError
from circuits.text_bias import caption_pair, text_attention_bias
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


def test_caption_pair_is_a_caption_and_its_swap(model_and_captions):
    _, captions = model_and_captions
    a, b = int(captions[0, 0]), int(captions[0, 2])
    pair = caption_pair(captions, a, b)
    assert pair[0].tolist() == captions[0].tolist()
    assert (int(pair[1, 0]), int(pair[1, 2])) == (b, a) and pair[1, 1] == pair[0, 1]


def test_caption_pair_defaults_to_the_papers_17_and_19(default_world):
    pair = caption_pair(default_world.probe("unseen_pair", "text").tokens)
    assert [(int(c[0]), int(c[2])) for c in pair] == [(17, 19), (19, 17)]


def test_caption_pair_of_labels_without_captions_is_an_error(model_and_captions):
    _, captions = model_and_captions
    with pytest.raises(CircuitsError, match="no caption with 1 as subject"):
        caption_pair(captions, 1, int(captions[0, 2]))
