"""A task written from scratch against `circuits.tasks.Task`: does token A come before token B?

An input is [CLS] followed by ``n_pos`` tokens: A and B at two distinct positions, random
filler tokens elsewhere; the target is 1 when A comes first. A few position pairs are held out
of training in both orders (``unseen_pairs``): accuracy there measures generalization, while
``seen_pairs`` draws new fillers around the training position pairs.
"""

from __future__ import annotations

import itertools
from typing import NamedTuple

import torch
from torch import Tensor

from circuits.tasks import Probe

CLS, A, B = 0, 1, 2  # fillers are the tokens after B


class Split(NamedTuple):
    tokens: Tensor  # [n, 1 + n_pos], [CLS] first
    target: Tensor  # [n], 1 when A is before B
    a: Tensor  # [n], position of A (index into tokens)
    b: Tensor  # [n], position of B


class OrderTask:
    split_names = ("train", "seen_pairs", "unseen_pairs")
    eval_splits = ("seen_pairs", "unseen_pairs")

    def __init__(self, n_pos: int = 8, n_fillers: int = 4, n_heldout: int = 6, per_pair: int = 32, seed: int = 0):
        self.n_pos, self.n_fillers = n_pos, n_fillers
        g = torch.Generator().manual_seed(seed)
        pairs = list(itertools.combinations(range(1, n_pos + 1), 2))
        order = torch.randperm(len(pairs), generator=g).tolist()
        heldout = [pairs[i] for i in order[:n_heldout]]
        seen = [pairs[i] for i in order[n_heldout:]]
        both = lambda ps: ps + [(j, i) for i, j in ps]  # noqa: E731 (A first, then B first)
        self.splits = {
            "train": self._split(both(seen), per_pair, g),
            "seen_pairs": self._split(both(seen), per_pair // 4, g),
            "unseen_pairs": self._split(both(heldout), per_pair, g),
        }

    def _split(self, pairs: list[tuple[int, int]], repeats: int, g: torch.Generator) -> Split:
        ab = torch.tensor(pairs).repeat_interleave(repeats, 0)
        tokens = torch.randint(B + 1, B + 1 + self.n_fillers, (len(ab), 1 + self.n_pos), generator=g)
        rows = torch.arange(len(ab))
        tokens[:, 0], tokens[rows, ab[:, 0]], tokens[rows, ab[:, 1]] = CLS, A, B
        return Split(tokens, (ab[:, 0] < ab[:, 1]).long(), ab[:, 0], ab[:, 1])

    def __getitem__(self, name: str) -> Split:
        return self.splits[name]

    def model_sizes(self) -> dict[str, int]:
        return {"d_vocab": B + 1 + self.n_fillers, "n_ctx": 1 + self.n_pos}

    @torch.no_grad()
    def evaluate(self, model, splits=None, pooled_only: bool = True) -> dict[str, float]:
        """Accuracy of ``model(tokens, pooled_only=...)``'s two logits per split."""
        out = {}
        for name in splits or self.eval_splits:
            split = self[name]
            predicted = model(split.tokens, pooled_only=pooled_only).argmax(-1)
            out[name] = (predicted == split.target).float().mean().item()
        return out

    def probe(self, split: str, encoder: str = "vision") -> Probe:
        """The inputs of ``split`` with A as the first object and B as the second."""
        s = self[split]
        columns = torch.arange(-1, self.n_pos)  # [CLS] is not a position (-1), then 0..n_pos-1
        return Probe(s.tokens, s.a, s.b, columns, encoder=encoder, split=split, names=("A", "B"))

    def position_labels(self, tokens: Tensor, encoder: str = "vision") -> list[str]:
        return [{CLS: "CLS", A: "A", B: "B"}.get(int(t), f"x{int(t)}") for t in tokens]
