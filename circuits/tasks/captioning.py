"""Captioning on the spatial-relation worlds: the task of the prefix-LM toy VLM ([L] App. O).

The images and splits are the `World`'s (1D or 2D). A model reads the pixels (no [CLS]) and
``[BOS] w1 w2 w3`` and predicts the caption ``w1 w2 w3 [EOT]``: "A is-left-of B [EOT]" for
two objects, "A is in-the-image [EOT]" for one (the world's own 4-token caption; our CHOICE,
[L] does not say). The loss is next-token cross-entropy on the caption tokens only; accuracy
is exact match of greedy generation with a true caption of the image ([L] App. O "free
generation of the complete relational text"), plus ``label_set`` on unseen pairs: the two
generated labels are the image's two objects and the relation token is a relation.

``caption_order="relation_first"`` (``model.decoder.caption_order``, our CHOICE for a controlled
experiment) trains and generates the same captions with their first two words swapped,
"is-left-of A B [EOT]" / "is A in-the-image [EOT]", so that the caption's form is the first
decision and does not follow a label. Generated captions are returned in the world's order
("A rel B"), so every metric reads them alike.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from jaxtyping import Bool, Int
from torch import Tensor

from circuits.data.world import CAPTION_LEN, EVAL_SPLITS, SPLIT_NAMES, Split, World
from circuits.errors import CircuitsError
from circuits.tasks.base import Probe

CHUNK = 4096  # images per generation pass
CAPTION_ORDERS = {"subject_first": [0, 1, 2, 3], "relation_first": [1, 0, 2, 3]}  # sequence slot -> world caption word


@dataclass(frozen=True)
class CaptionBatch:
    """Teacher-forced sequences: ``pixels`` + ``text`` in, ``targets`` (next tokens) out; a
    target -100 carries no loss (the toy 2DS prompt, `circuits.tasks.toy2ds`)."""

    pixels: Int[Tensor, "n pixels"]
    text: Int[Tensor, "n text"]  # captions: [BOS] w1 w2 w3
    targets: Int[Tensor, "n text"]  # captions: w1 w2 w3 [EOT]

    def __len__(self) -> int:
        return self.pixels.shape[0]

    def take(self, index: Tensor) -> CaptionBatch:
        return CaptionBatch(self.pixels[index], self.text[index], self.targets[index])

    @property
    def tokens(self) -> Int[Tensor, "n seq"]:
        return torch.cat([self.pixels, self.text], dim=1)

    def to(self, device: torch.device | str) -> CaptionBatch:
        return CaptionBatch(self.pixels.to(device), self.text.to(device), self.targets.to(device))


class CaptionTask:
    """A `circuits.tasks.Task` for prefix-LM models over a `World` (same splits and labels)."""

    split_names: tuple[str, ...] = SPLIT_NAMES
    eval_splits: tuple[str, ...] = EVAL_SPLITS

    def __init__(self, world: World, pool_tokens: int | None = None, caption_order: str = "subject_first"):
        if caption_order not in CAPTION_ORDERS:
            raise CircuitsError(f"caption_order must be one of {', '.join(CAPTION_ORDERS)} (got {caption_order!r})")
        self.world, self.cfg, self.pool_tokens = world, world.cfg, pool_tokens
        self.bos = world.d_vocab_text  # one token after the world's text vocabulary
        self.order = CAPTION_ORDERS[caption_order]  # a permutation that is its own inverse

    def sequence(self, captions: Int[Tensor, "n 4"]) -> Int[Tensor, "n 4"]:
        """World-order captions ("A rel B [EOT]") in the order the model reads and writes them
        (and back: the orders are their own inverses)."""
        return captions[:, self.order]

    def __getitem__(self, name: str) -> Split:
        return self.world[name]

    @property
    def splits(self) -> dict[str, Split]:
        return self.world.splits

    @property
    def n_vision(self) -> int:
        return self.pool_tokens or self.cfg.n_pixels

    def model_sizes(self) -> dict[str, int]:
        """Constructor sizes of `circuits.models.HookedPrefixLM` for this world."""
        return {
            "d_vocab_vision": self.world.d_vocab_vision,
            "d_vocab_text": self.world.d_vocab_text + 1,
            "height": self.cfg.height,
            "width": self.cfg.width,
            "n_text": CAPTION_LEN,
        }

    # ------------------------------------------------------------------ data
    @staticmethod
    def pixels(split: Split) -> Int[Tensor, "n pixels"]:
        """The pixels of a split's images ([CLS] dropped)."""
        return split.images[:, 1:]

    def batch(self, split: Split | str) -> CaptionBatch:
        """One teacher-forced sequence per (image, true caption) of ``split``."""
        split = self[split] if isinstance(split, str) else split
        image, slot = (split.true_captions >= 0).nonzero(as_tuple=True)
        captions = self.sequence(self.world.captions[split.true_captions[image, slot]])
        bos = torch.full((len(image), 1), self.bos, dtype=torch.long)
        return CaptionBatch(self.pixels(split)[image], torch.cat([bos, captions[:, :-1]], dim=1), captions)

    def train_batch(self, device: torch.device | str = "cpu") -> CaptionBatch:
        """The training set (single-object then two-object images) on ``device``."""
        return self.batch(self.world.train).to(device)

    # ------------------------------------------------------------- metrics
    @torch.no_grad()
    def generate(self, model, split: Split | str) -> Int[Tensor, "n 4"]:
        """Greedy captions of every image of ``split`` (chunked), in the world's word order."""
        split = self[split] if isinstance(split, str) else split
        pixels = self.pixels(split).to(model.device)
        if not len(pixels):
            return pixels[:, :0]
        return self.sequence(torch.cat([model.generate(chunk, self.bos) for chunk in pixels.split(CHUNK)]))

    def exact_match(self, generated: Int[Tensor, "n 4"], split: Split) -> Bool[Tensor, " n"]:
        """Generated caption equals one of the image's true captions (up to and including [EOT])."""
        truth = self.world.captions.to(generated.device)[split.true_captions.clamp(min=0).to(generated.device)]  # [n, t, 4]
        valid = (split.true_captions >= 0).to(generated.device)
        return ((truth == generated[:, None]).all(-1) & valid).any(-1)

    def label_set_match(self, generated: Int[Tensor, "n 4"], split: Split) -> Bool[Tensor, " n"]:
        """Two-object images: the generated labels are the two objects (either order) and the
        second token is a relation token of the world."""
        v = self.world.vocab
        objects = split.objects.to(generated.device)
        words = generated[:, [0, 2]]
        same = (words == objects).all(-1) | (words == objects.flip(-1)).all(-1)
        relations = [v.left_of, *([v.right_of] if self.cfg.captions == "bidirectional" else [])]
        return same & torch.isin(generated[:, 1], torch.tensor(relations, device=generated.device))

    @torch.no_grad()
    def order_choice(self, model, split: Split | str) -> Bool[Tensor, " n"]:
        """Two-object images: the image's first true caption "A rel B" gets a higher teacher-forced
        log-likelihood (its four tokens, [EOT] included) than the same caption with the labels
        swapped, "B rel A". The forced choice between the two orders isolates the relational
        mechanism from free generation's choice of labels and caption form (label-aware chance
        0.5, as for the CLIP models' unseen-pair accuracy; our metric, not [L]'s)."""
        split = self[split] if isinstance(split, str) else split
        if split.objects.shape[1] < 2 or bool((split.objects[:, 1] < 0).any()):
            raise CircuitsError(f"order_choice needs two-object images; split {split.name!r} has others")
        true = self.world.captions[split.true_captions[:, 0]]  # [n, 4]: A rel B [EOT]
        swapped = true.clone()
        swapped[:, 0], swapped[:, 2] = true[:, 2], true[:, 0]
        pixels = self.pixels(split)
        bos = torch.full((len(true), 1), self.bos, dtype=torch.long)

        def loglik(captions: Tensor) -> Tensor:
            out = []
            for px, cap, b in zip(pixels.split(CHUNK), captions.split(CHUNK), bos.split(CHUNK)):
                tokens = torch.cat([px, b, cap[:, :-1]], dim=1).to(model.device)
                logp = model(tokens).log_softmax(-1)  # [n, text, vocab]
                out.append(logp.gather(-1, cap.to(model.device)[..., None])[..., 0].sum(-1))
            return torch.cat(out)

        return loglik(self.sequence(true)) > loglik(self.sequence(swapped))

    def evaluate(self, model, splits: tuple[str, ...] | None = None, pooled_only: bool = True) -> dict[str, float]:
        """Exact-match accuracy per split, and on unseen pairs ``label_set`` and ``order_choice``
        (`order_choice`: the true order preferred to the swapped one). The decoder has no
        pooled path: ``pooled_only`` is accepted for the `Task` protocol, and generation always
        runs the full hooked forward (so hooks attached to the model always take effect)."""
        out: dict[str, float] = {}
        for name in splits or self.eval_splits:
            split = self[name]
            generated = self.generate(model, split)
            out[name] = _mean(self.exact_match(generated, split))
            if name == "unseen_pair":
                out["label_set"] = _mean(self.label_set_match(generated, split))
                out["order_choice"] = _mean(self.order_choice(model, split))
        return out

    # ------------------------------------------------------------- probes
    def vision_position(self, pixel: Int[Tensor, "..."]) -> Int[Tensor, "..."]:
        """Residual position of the vision token holding ``pixel`` (its pooled bin, if pooled)."""
        return pooled_position(pixel, self.cfg.height, self.cfg.width, self.pool_tokens)

    def probe(self, split: str = "unseen_pair", encoder: str = "decoder", query: int = 0) -> Probe:
        """Two-object images with their canonical caption teacher-forced; ``first``/``second`` are
        the vision positions of the left / right object and the statistics read text query
        ``query`` (0 = [BOS], 1..3 = w1..w3)."""
        if encoder != "decoder":
            raise CircuitsError(f"unknown encoder {encoder!r} for a prefix-LM task; it has: decoder")
        if not 0 <= query < CAPTION_LEN:
            raise CircuitsError(f"query must be a text position 0..{CAPTION_LEN - 1} (got {query})")
        data = self[split]
        if data.objects.shape[1] < 2 or bool((data.objects[:, 1] < 0).any()):
            raise CircuitsError(f"split {split!r} does not hold two-object images; use seen_pair, unseen_pair or train_pair")
        batch = self.batch(Split(data.name, data.images, data.objects, data.positions, data.true_captions[:, :1]))
        n_vis = self.n_vision
        vis = torch.arange(n_vis)
        cols = vis if self.pool_tokens is not None and self.cfg.height == 1 else self.world.column(vis)
        if self.pool_tokens is not None and self.cfg.height > 1:
            cols = vis % int(round(self.pool_tokens**0.5))
        columns = torch.cat([cols, torch.full((CAPTION_LEN,), -1)])
        return Probe(batch.tokens, self.vision_position(data.positions[:, 0]), self.vision_position(data.positions[:, 1]),
                     columns, encoder="decoder", query=n_vis + query, split=split, names=("left", "right"))

    def image_text(self, tokens: Int[Tensor, " seq"]) -> str:
        """The pixels of one input (its first n_pixels tokens) as the world writes them."""
        pixels = tokens[: self.cfg.n_pixels]
        return self.world.image_text(torch.cat([pixels.new_tensor([self.world.vocab.cls]), pixels]))

    def position_labels(self, tokens: Int[Tensor, " pos"], encoder: str = "decoder") -> list[str]:
        """``v0 .. v{n-1}`` for the vision tokens, then the words of the text."""
        v = self.world.vocab
        text = tokens[self.cfg.n_pixels :]
        words = ["[BOS]" if int(t) == self.bos else v.text_token_str(int(t)) for t in text]
        return [f"v{i}" for i in range(self.n_vision)] + words


def pooled_position(pixel: Int[Tensor, "..."], height: int, width: int, pool_tokens: int | None) -> Int[Tensor, "..."]:
    """Vision position of a row-major pixel index after average pooling to ``pool_tokens`` bins
    ([B] Sec. 3.2; `circuits.models.vlm.average_pool`): the pixel itself when not pooled."""
    if pool_tokens is None:
        return pixel
    if height == 1:
        return pixel // (width // pool_tokens)
    side = int(round(pool_tokens**0.5))
    return (pixel // width) // (height // side) * side + (pixel % width) // (width // side)


def _mean(x: Tensor) -> float:
    return float(x.float().mean()) if x.numel() else float("nan")
