"""Building blocks: the fused routes taken when no hook would see an activation compute the
same function as the hooked, op-by-op routes."""

import pytest
import torch

from circuits.models.components import LayerNorm, RMSNorm


@pytest.mark.parametrize("norm_cls", [LayerNorm, RMSNorm])
def test_norm_fused_route_equals_hooked_route(norm_cls):
    gen = torch.Generator().manual_seed(0)
    norm = norm_cls(16)
    with torch.no_grad():
        norm.w.copy_(torch.randn(16, generator=gen))
        if hasattr(norm, "b"):
            norm.b.copy_(torch.randn(16, generator=gen))
    x = 3 * torch.randn(4, 5, 16, generator=gen) + 1
    fused = norm(x)
    seen = []
    norm.hook_normalized.add_hook(lambda t, hook: seen.append(t))  # a hook forces the op-by-op route
    hooked = norm(x)
    assert len(seen) == 1 and seen[0] is hooked
    torch.testing.assert_close(fused, hooked, rtol=0, atol=1e-5)
    assert not torch.equal(fused, x)
