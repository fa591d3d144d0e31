"""Specification of the attention masks and of their use on every attention path."""

from __future__ import annotations

import pytest
import torch

from circuits.config import FORMAT_VERSION, EncoderConfig, RunConfig
from circuits.models import HookedEncoder
from circuits.models.masks import Bidirectional, Block, Causal, Prefix, make_mask

POS = torch.arange(5)


def test_bidirectional_allows_every_key():
    assert Bidirectional().allowed(POS, POS).all()


def test_causal_allows_exactly_the_keys_up_to_the_query():
    assert torch.equal(Causal().allowed(POS, POS), torch.ones(5, 5, dtype=torch.bool).tril())


def test_prefix_is_bidirectional_inside_the_prefix_and_causal_after_it():
    allowed = Prefix(2).allowed(POS, POS)
    want = torch.tensor(
        [[1, 1, 0, 0, 0], [1, 1, 0, 0, 0], [1, 1, 1, 0, 0], [1, 1, 1, 1, 0], [1, 1, 1, 1, 1]], dtype=torch.bool
    )
    assert torch.equal(allowed, want)


def test_block_allows_keys_of_the_same_block_only():
    allowed = Block(2).allowed(POS, POS)
    block = POS // 2
    assert torch.equal(allowed, block[:, None] == block[None, :])


def test_config_mask_names_build_the_mask_objects():
    assert make_mask("causal") == Causal() and make_mask("bidirectional") == Bidirectional()


def _encoder(mask, **cfg) -> HookedEncoder:
    cfg = EncoderConfig(d_model=12, d_head=4, n_heads=2, **cfg)
    return HookedEncoder(cfg, d_vocab=7, n_ctx=6, generator=torch.Generator().manual_seed(3), mask=mask)


MASKS = [Prefix(3), Block(2), Causal()]


@pytest.mark.parametrize("mask", MASKS, ids=repr)
def test_pattern_is_zero_exactly_where_the_mask_forbids(mask):
    enc = _encoder(mask)
    _, cache = enc.run_with_cache(torch.randint(0, 7, (3, 6), generator=torch.Generator().manual_seed(0)))
    allowed = mask.allowed(torch.arange(6), torch.arange(6))
    pattern = cache["pattern", 0]
    assert (pattern[..., ~allowed] == 0).all()
    assert (pattern[..., allowed] > 0).all()


@pytest.mark.parametrize("positional", ["learned", "rotary"])
@pytest.mark.parametrize("pool_index", [0, 2, -1])
@pytest.mark.parametrize("mask", MASKS, ids=repr)
def test_every_path_applies_a_custom_mask(mask, pool_index, positional):
    """Full, decomposed, pooled (2 layers: last layer pooled) and pooled-from-table (1 layer) agree."""
    tokens = torch.randint(0, 7, (4, 6), generator=torch.Generator().manual_seed(1))
    for n_layers in (1, 2):
        enc = _encoder(mask, n_layers=n_layers, positional=positional)
        enc.pool_index = pool_index
        with torch.no_grad():
            full = enc(tokens)
            torch.testing.assert_close(enc(tokens, decompose=True), full, rtol=1e-5, atol=1e-5)
            torch.testing.assert_close(enc(tokens, pooled_only=True), full, rtol=1e-5, atol=1e-5)


def test_a_version_1_config_with_causal_flags_loads_as_masks():
    data = RunConfig().to_dict()
    data["format_version"] = 1
    for side, causal in (("vision", False), ("text", True)):
        del data["model"][side]["mask"]
        data["model"][side]["causal"] = causal
    cfg = RunConfig.from_dict(data)
    assert (cfg.model.vision.mask, cfg.model.text.mask) == ("bidirectional", "causal")


def test_a_version_1_config_may_make_the_text_encoder_bidirectional():
    cfg = RunConfig.from_dict({"format_version": 1, "model": {"text": {"causal": False}}})
    assert cfg.model.text.mask == "bidirectional"


def test_configs_are_written_with_format_version_2():
    assert FORMAT_VERSION == 2 and RunConfig().to_dict()["format_version"] == 2
