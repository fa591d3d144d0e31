"""The text encoder's [EOT] attention over subject / relation / object (Sec. 6.1, Fig. 6).

The paper: "head 3 exhibits a pronounced leftward bias in EOT→word-token attention: the subject
entity (the first-mentioned object) receives the largest weight, independent of whether its
label is 17 or 19"; "Head 3 is the most strongly left-biased, whereas heads 0, 1, and 2 show
rightward bias." (Head indices are seed-specific.)

`text_attention_bias` reads the [EOT] query's attention row of one layer over a caption set (the
paper: the 20 ordered captions "X is on the left of Y" with X, Y among the held-out labels
16..20) and gives, per head, the mean and std over captions at each key position, the bias
``mean(att[subject]) − mean(att[object])`` (positive: toward the first-mentioned object, "left")
and the fraction of captions whose own difference has the sign of that bias. `caption_pair`
picks Fig. 6(a)'s two captions, "17 is on the left of 19" and "19 is on the left of 17".
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from jaxtyping import Int
from torch import Tensor

from circuits.decompose import check_layer, get_encoder
from circuits.errors import CircuitsError
from circuits.models import HookedCLIP, HookedEncoder


@dataclass
class TextAttentionBias:
    """Per head (outer lists), per key position (inner lists) unless said otherwise."""

    layer: int
    n_captions: int
    mean: list[list[float]]  # [head][key]
    std: list[list[float]]
    bias: list[float]  # mean att[subject] - mean att[object]
    sign_agreement: list[float]  # fraction of captions whose subject-object difference has the bias's sign
    subject: int
    object: int
    per_caption: list[list[list[float]]]  # [caption][head][key] (Fig. 6a)

    def to_dict(self) -> dict:
        return asdict(self)


@torch.no_grad()
def text_attention_bias(
    model: HookedCLIP | HookedEncoder,
    captions: Int[Tensor, "n pos"],
    layer: int = 0,
    subject: int = 0,
    object: int = 2,
) -> TextAttentionBias:
    """[EOT]-row attention of ``layer`` over ``captions`` (Sec. 6.1, Fig. 6b,c); ``subject`` /
    ``object`` are the key positions of the two labels (0 and 2 in "X [is on the left of] Y")."""
    enc = get_encoder(model, "text")
    layer = check_layer(enc, layer)
    name = f"blocks.{layer}.attn.hook_pattern"
    was_training = enc.training
    enc.eval()
    try:
        _, cache = enc.run_with_cache(captions.to(enc.W_E.device), names_filter=name)
    finally:
        enc.train(was_training)
    row = cache[name][:, :, enc.pool_index % captions.shape[1], :].cpu()  # [n, head, key]
    diff = row[:, :, subject] - row[:, :, object]
    bias = diff.mean(0)
    agree = (torch.sign(diff) == torch.sign(bias)).float().mean(0)
    return TextAttentionBias(layer, captions.shape[0], row.mean(0).tolist(), row.std(0, correction=0).tolist(),
                             bias.tolist(), agree.tolist(), subject, object, row.tolist())


def caption_pair(
    captions: Int[Tensor, "n pos"], a: int | None = None, b: int | None = None, subject: int = 0, object: int = 2
) -> Int[Tensor, "2 pos"]:
    """The captions "a … b" and "b … a" among ``captions`` (Fig. 6a: 17 and 19, the 2nd and 4th
    of the held-out labels 16..20). Default: the 2nd and 4th of the subject labels present (the
    last two when there are fewer than 4)."""
    labels = torch.unique(captions[:, subject]).tolist()
    if len(labels) < 2:
        raise CircuitsError(f"a caption pair needs two labels; these captions have {len(labels)}")
    a = labels[min(1, len(labels) - 2)] if a is None else a
    b = labels[min(3, len(labels) - 1)] if b is None else b
    rows = []
    for x, y in ((a, b), (b, a)):
        hit = ((captions[:, subject] == x) & (captions[:, object] == y)).nonzero()
        if not len(hit):
            raise CircuitsError(f"no caption with {x} as subject and {y} as object; subjects here are {labels}")
        rows.append(captions[hit[0, 0]])
    return torch.stack(rows)
