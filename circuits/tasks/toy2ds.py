"""Question answering on the toy 2DS world: the task of a prefix-LM on [B]'s 2DS (spec B7).

A model reads the pixels of an image (no [CLS]) and ``[BOS] question [SEP]``, and answers
``answer [EOT]`` (one token, two for ``shape_color_abs``). Layout of the text (CHOICE: a fixed
length, so [SEP] and the answer sit at the same positions in every sequence)::

    text     [BOS] q1 .. q6 [SEP] a1 a2          q right-padded with [PAD] to 6 tokens
    targets   -    -  ..  -  a1   a2 [EOT]       (-100 = no loss; 1-token answers: a1 [EOT] -)

The loss is next-token cross-entropy on the answer and [EOT] only (`CaptionObjective` reads
-100 as "no loss"). Grading is exact match of greedy decoding from ``[SEP]`` up to and including
[EOT] ([B] grades with a judge LLM; a toy answer is a token, so exact match). Overall accuracy is
the unweighted mean of the six categories, as in [B] Table 2; accuracy against k is the same
mean over the questions about images with k objects ([B] Fig. 5/6).
"""

from __future__ import annotations

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from circuits.config import Toy2DSConfig
from circuits.data.toy2ds import ABSOLUTE, ANSWER_LEN, CATEGORIES, QUESTION_LEN, RELATIVE, QASplit, Toy2DSWorld
from circuits.errors import CircuitsError
from circuits.tasks.base import Probe
from circuits.tasks.captioning import CaptionBatch, pooled_position

CHUNK = 4096  # questions per generation pass
IGNORE = -100  # target of a position without loss (torch's cross-entropy ignore_index)
SPLIT_NAMES = ("train_sample", "test")


class Toy2DSTask:
    """A `circuits.tasks.Task` for prefix-LM models over a `Toy2DSWorld`.

    Splits: ``test`` (500 images, 3,000 questions by default) and ``train_sample`` (the
    questions of as many training images, for the training curve); the model trains on
    ``train`` (`train_batch`). `evaluate` reports, per split, the overall accuracy (key: the
    split's name), each category (``test.color_abs``), the absolute and relative means
    (``test.abs``, ``test.rel``) and the accuracy against k (``test.k2`` ..).
    """

    split_names: tuple[str, ...] = SPLIT_NAMES
    eval_splits: tuple[str, ...] = ("test",)
    default_batch_size = 256  # train.batch_size=null: minibatches of 256 sequences (a full batch is 120,000)

    def __init__(self, cfg: Toy2DSConfig | Toy2DSWorld, pool_tokens: int | None = None):
        self.world = cfg if isinstance(cfg, Toy2DSWorld) else Toy2DSWorld(cfg)
        self.cfg, self.vocab, self.pool_tokens = self.world.cfg, self.world.vocab, pool_tokens
        self.bos = self.vocab.bos
        self.sep_offset = 1 + QUESTION_LEN  # text position of [SEP], which predicts the first answer token

    def __getitem__(self, name: str) -> QASplit:
        return self.world[name]

    @property
    def n_vision(self) -> int:
        return self.pool_tokens or self.cfg.n_pixels

    @property
    def n_text(self) -> int:
        return self.sep_offset + ANSWER_LEN

    def model_sizes(self) -> dict[str, int]:
        """Constructor sizes of `circuits.models.HookedPrefixLM`. The vision vocabulary is that of
        a 2D `World` with ``n_colors * n_shapes`` labels (background, objects, an unused [CLS])."""
        return {
            "d_vocab_vision": self.cfg.n_objects + 2,
            "d_vocab_text": self.vocab.d_vocab,
            "height": self.cfg.height,
            "width": self.cfg.width,
            "n_text": self.n_text,
        }

    # ------------------------------------------------------------------ data
    def prompt(self, split: QASplit) -> Int[Tensor, "n text"]:
        """``[BOS] question [SEP]`` then [PAD] in the answer slots (what generation starts from)."""
        n, v = len(split), self.vocab
        text = torch.full((n, self.n_text), v.pad, dtype=torch.long)
        text[:, 0], text[:, 1 : self.sep_offset], text[:, self.sep_offset] = v.bos, split.question, v.sep
        return text

    def batch(self, split: QASplit | str) -> CaptionBatch:
        """One teacher-forced sequence per question of ``split``; targets -100 except on the answer."""
        split = self[split] if isinstance(split, str) else split
        text = self.prompt(split)
        text[:, self.sep_offset + 1 :] = split.answer[:, : ANSWER_LEN - 1]
        targets = torch.full_like(text, IGNORE)
        targets[:, self.sep_offset :] = torch.where(split.answer == self.vocab.pad, IGNORE, split.answer)
        return CaptionBatch(split.pixels[split.image], text, targets)

    def train_batch(self, device: torch.device | str = "cpu") -> CaptionBatch:
        """The training set (every question of every training image) on ``device``."""
        return self.batch(self.world.train).to(device)

    # ------------------------------------------------------------- metrics
    @torch.no_grad()
    def generate(self, model, split: QASplit | str) -> Int[Tensor, "n 3"]:
        """Greedy answers to every question of ``split``: up to 3 tokens, decoding stopped at the
        first [EOT] (the slots after it hold [PAD]); each step runs only the unfinished rows."""
        split = self[split] if isinstance(split, str) else split
        pixels, text = split.pixels[split.image].to(model.device), self.prompt(split).to(model.device)
        out = torch.full((len(split), ANSWER_LEN), self.vocab.pad, dtype=torch.long, device=model.device)
        tokens = torch.cat([pixels, text], dim=1)
        start = pixels.shape[1] + self.sep_offset  # the [SEP] column of `tokens`
        active = torch.arange(len(split), device=model.device)
        for j in range(ANSWER_LEN):
            if not len(active):
                break
            token = torch.cat([model(chunk)[:, self.sep_offset + j].argmax(-1) for chunk in tokens[active].split(CHUNK)])
            out[active, j] = token
            if j + 1 < ANSWER_LEN:
                tokens[active, start + j + 1] = token
            active = active[token != self.vocab.eot]
        return out

    def exact_match(self, generated: Int[Tensor, "n 3"], split: QASplit) -> Bool[Tensor, " n"]:
        """The generated tokens equal the answer up to and including its [EOT]."""
        answer = split.answer.to(generated.device)
        return ((generated == answer) | (answer == self.vocab.pad)).all(-1)

    def accuracy(self, correct: Bool[Tensor, " n"], split: QASplit) -> dict[str, float]:
        """Overall (unweighted mean of the categories present), per category, absolute / relative
        means and per k (the same unweighted mean over that k's questions) of a correctness mask."""
        correct, cat, k = correct.cpu().float(), split.category, split.question_k
        per_cat = {c: float(correct[cat == i].mean()) for i, c in enumerate(CATEGORIES) if bool((cat == i).any())}
        out = {"": _mean(per_cat.values())}
        out.update(per_cat)
        out["abs"] = _mean(per_cat[CATEGORIES[i]] for i in ABSOLUTE if CATEGORIES[i] in per_cat)
        out["rel"] = _mean(per_cat[CATEGORIES[i]] for i in RELATIVE if CATEGORIES[i] in per_cat)
        for kk in self.world.ks:
            here = k == kk
            out[f"k{kk}"] = _mean(float(correct[here & (cat == i)].mean()) for i in range(len(CATEGORIES)) if bool((here & (cat == i)).any()))
        return out

    def accuracy_table(self, correct: Bool[Tensor, " n"], split: QASplit) -> Float[Tensor, "n_k n_categories"]:
        """Accuracy per (k, category) of a correctness mask (NaN where a cell has no question)."""
        index = (split.question_k - self.cfg.min_objects) * len(CATEGORIES) + split.category
        n = len(self.world.ks) * len(CATEGORIES)
        hits = torch.zeros(n).index_add_(0, index, correct.cpu().float())
        counts = torch.zeros(n).index_add_(0, index, torch.ones(len(index)))
        return (hits / counts).view(len(self.world.ks), len(CATEGORIES))

    def evaluate(self, model, splits: tuple[str, ...] | None = None, pooled_only: bool = True) -> dict[str, float]:
        """Exact-match accuracies per split (see the class docstring for the keys). The decoder
        has no pooled path: ``pooled_only`` is accepted for the `Task` protocol only."""
        out: dict[str, float] = {}
        for name in splits or self.eval_splits:
            split = self[name]
            for key, value in self.accuracy(self.exact_match(self.generate(model, split), split), split).items():
                out[f"{name}.{key}" if key else name] = value
        return out

    # ------------------------------------------------------------- probes
    def vision_position(self, pixel: Int[Tensor, "..."]) -> Int[Tensor, "..."]:
        """Residual position of the vision token holding ``pixel`` (its pooled bin, if pooled)."""
        return pooled_position(pixel, self.cfg.height, self.cfg.width, self.pool_tokens)

    def probe(self, split: str = "test", encoder: str = "decoder", query: int | None = None) -> Probe:
        """The relative questions of ``split``, teacher-forced; ``first``/``second`` are the vision
        positions of the two objects compared (``names``: subject, object) and the statistics read
        text position ``query`` (default: [SEP], which predicts the answer)."""
        if encoder != "decoder":
            raise CircuitsError(f"unknown encoder {encoder!r} for a prefix-LM task; it has: decoder")
        query = self.sep_offset if query is None else query
        if not 0 <= query < self.n_text:
            raise CircuitsError(f"query must be a text position 0..{self.n_text - 1} (got {query})")
        data = self[split]
        rel = data.where(torch.isin(data.category, torch.tensor(RELATIVE)))
        cell = lambda slot: (data.rows * self.cfg.width + data.cols)[rel.image, slot]  # noqa: E731
        vis = torch.arange(self.n_vision)
        if self.pool_tokens is None:
            cols, rows = vis % self.cfg.width, vis // self.cfg.width
        else:
            side = int(round(self.pool_tokens**0.5))
            cols, rows = vis % side, vis // side
        text = torch.full((self.n_text,), -1)
        return Probe(self.batch(rel).tokens, self.vision_position(cell(rel.subject)), self.vision_position(cell(rel.other)),
                     torch.cat([cols, text]), encoder="decoder", query=self.n_vision + query, split=split,
                     names=("subject", "object"), rows=torch.cat([rows, text]))

    def position_labels(self, tokens: Int[Tensor, " pos"], encoder: str = "decoder") -> list[str]:
        """``v0 .. v{n-1}`` for the vision tokens, then the words of the text."""
        words = self.vocab.names()
        return [f"v{i}" for i in range(self.n_vision)] + [words[int(t)] for t in tokens[self.cfg.n_pixels :]]


def _mean(values) -> float:
    values = list(values)
    return sum(values) / len(values) if values else float("nan")
