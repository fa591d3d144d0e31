"""The toy 2DS world: coloured shapes on a grid and questions about them ([B] Sec. 5.1, spec B7).

[B]'s 2DS benchmark, VERBATIM facts: images with k = 2, 3, 4, 5, 6 objects, "the same set of
objects" within each k, 100 images per k (500), and six question categories (colour, shape,
colour+shape) x (absolute, relative), one question per category per image (3,000). Everything
else is our CHOICE (`circuits.config.Toy2DSConfig`, docs/toy2ds.md):

* an ``H x W`` grid (6 x 6); each object takes one cell, in distinct rows and columns (so every
  pair differs along both axes and every extreme is unique); colours and shapes are distinct
  within an image (so each attribute names one object);
* one token id per (colour c, shape s) object, ``1 + c * n_shapes + s``, 0 = background: the
  image format of a 2D `circuits.data.World` with ``n_colors * n_shapes`` labels (row-major
  pixels; `World` adds [CLS], the prefix-LM does not);
* the test set: one object set per k (drawn from ``test_seed``), ``n_test_per_k`` distinct
  layouts per k; the training set: random object sets, ``n_train_per_k`` images per k, whose
  *layouts* (the set of occupied cells, whatever the objects) never occur in the test set;
* questions (answer = single token, ``shape_color_abs`` two):
  ``color_abs``   [what-color] [top|bottom|left|right]           -> colour of the extreme object
  ``shape_abs``   [what-shape] [dir]                               -> its shape
  ``shape_color_abs`` [what-object] [dir]                          -> its colour, its shape
  ``color_rel``   [is] [c1] [left-of|right-of|above|below] [c2]    -> yes / no
  ``shape_rel``   [is] [s1] [rel] [s2]                             -> yes / no
  ``shape_color_rel`` [is] [c1] [s1] [rel] [c2] [s2]               -> yes / no
  relative answers are exactly balanced (half yes, rounded down) within each k of each category.

All of it is drawn with tensor operations from the two seeds; nothing loops over images.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace
from functools import cached_property

import torch
from jaxtyping import Bool, Int
from torch import Tensor

from circuits.config import Toy2DSConfig
from circuits.data.world import UnknownSplit
from circuits.errors import ConfigError

COLORS = ("red", "green", "blue", "yellow", "purple", "orange")
SHAPES = ("circle", "square", "triangle", "star", "cross", "diamond")
CATEGORIES = ("color_abs", "color_rel", "shape_abs", "shape_rel", "shape_color_abs", "shape_color_rel")  # [B] Table 2 order
ABSOLUTE = (0, 2, 4)  # indices of the absolute categories in CATEGORIES
RELATIVE = (1, 3, 5)
DIRECTIONS = ("top", "bottom", "left", "right")  # absolute questions
RELATIONS = ("left of", "right of", "above", "below")  # relative questions
QUESTION_LEN = 6  # the longest question ([is] c1 s1 rel c2 s2); shorter ones are padded with [PAD]
ANSWER_LEN = 3  # answer tokens then [EOT], padded with [PAD]: [yes, EOT, PAD], [red, circle, EOT]


@dataclass(frozen=True)
class QAVocab:
    """Text tokens of the toy 2DS: specials, question words, answers, directions, relations,
    then the colours and the shapes."""

    n_colors: int = 6
    n_shapes: int = 6
    pad: int = 0
    bos: int = 1
    sep: int = 2
    eot: int = 3
    what_color: int = 4
    what_shape: int = 5
    what_object: int = 6
    is_: int = 7
    yes: int = 8
    no: int = 9
    first_direction: int = 10  # top, bottom, left, right
    first_relation: int = 14  # left of, right of, above, below
    first_color: int = 18

    @property
    def first_shape(self) -> int:
        return self.first_color + self.n_colors

    @property
    def d_vocab(self) -> int:
        return self.first_shape + self.n_shapes

    def names(self) -> list[str]:
        """The word of every token id."""
        words = ["[PAD]", "[BOS]", "[SEP]", "[EOT]", "what color", "what shape", "what object", "is", "yes", "no"]
        return words + list(DIRECTIONS) + list(RELATIONS) + list(COLORS[: self.n_colors]) + list(SHAPES[: self.n_shapes])


@dataclass(frozen=True)
class QASplit:
    """Images and one-question-per-category items about them.

    Per image: ``pixels`` (row-major, no [CLS]), its objects ``objects`` (token ids), ``rows`` and
    ``cols`` (padded with -1 beyond ``k``). Per question: ``image`` (row of the image arrays),
    ``category`` (index into `CATEGORIES`), the ``question`` and ``answer`` tokens, and what
    was drawn: ``subject`` (slot of the object asked about: the extreme one, or the first of a
    relation), ``other`` (the second object of a relation, else -1) and ``direction`` (index
    into `DIRECTIONS` or `RELATIONS`)."""

    name: str
    pixels: Int[Tensor, "n_img pixels"]
    objects: Int[Tensor, "n_img slots"]
    rows: Int[Tensor, "n_img slots"]
    cols: Int[Tensor, "n_img slots"]
    k: Int[Tensor, " n_img"]
    image: Int[Tensor, " n"]
    category: Int[Tensor, " n"]
    question: Int[Tensor, "n q_len"]
    answer: Int[Tensor, "n a_len"]
    subject: Int[Tensor, " n"]
    other: Int[Tensor, " n"]
    direction: Int[Tensor, " n"]

    def __len__(self) -> int:
        return self.question.shape[0]

    @property
    def question_k(self) -> Int[Tensor, " n"]:
        """The number of objects in each question's image."""
        return self.k[self.image]

    def where(self, mask: Bool[Tensor, " n"], name: str | None = None) -> QASplit:
        """The questions selected by ``mask`` (the images stay, so ``image`` indices stay valid)."""
        per_question = {f.name: getattr(self, f.name)[mask] for f in fields(self)
                        if f.name in ("image", "category", "question", "answer", "subject", "other", "direction")}
        return replace(self, name=name or self.name, **per_question)


class Toy2DSWorld:
    """The toy 2DS world of a `Toy2DSConfig`: ``test`` and ``train`` `QASplit`s, the test's
    object set per k (``test_objects``), the text `QAVocab`. Deterministic given the config."""

    def __init__(self, cfg: Toy2DSConfig):
        cfg.validate()
        self.cfg = cfg
        self.vocab = QAVocab(cfg.n_colors, cfg.n_shapes)
        self.ks = list(range(cfg.min_objects, cfg.max_objects + 1))
        for k in self.ks:
            n = n_layouts(cfg.height, cfg.width, k)
            if 2 * cfg.n_test_per_k > n:
                raise ConfigError(f"toy2ds.n_test_per_k={cfg.n_test_per_k} needs at most half of the {n} layouts of {k} objects"
                                  f" on a {cfg.height}x{cfg.width} grid (distinct test layouts, the rest left to training)")
        gen = torch.Generator().manual_seed(cfg.test_seed)
        self.test_objects: dict[int, Tensor] = {}
        parts = []
        for k in self.ks:
            colors, shapes = _first_k(gen, 1, cfg.n_colors, k)[0], _first_k(gen, 1, cfg.n_shapes, k)[0]
            self.test_objects[k] = 1 + colors * cfg.n_shapes + shapes
            rows, cols = self._distinct_layouts(gen, k, cfg.n_test_per_k)
            parts.append((self.test_objects[k].expand(cfg.n_test_per_k, k), rows, cols))
        self.test = self._split("test", parts, gen)
        taken = occupancy(self.test.rows, self.test.cols, cfg.height, cfg.width)

        gen = torch.Generator().manual_seed(cfg.train_seed)
        parts = []
        for k in self.ks:
            rows, cols = self._layouts_avoiding(gen, k, cfg.n_train_per_k, taken)
            colors, shapes = _first_k(gen, cfg.n_train_per_k, cfg.n_colors, k), _first_k(gen, cfg.n_train_per_k, cfg.n_shapes, k)
            parts.append((1 + colors * cfg.n_shapes + shapes, rows, cols))
        self.train = self._split("train", parts, gen)

    def __getitem__(self, name: str) -> QASplit:
        splits = {"train": self.train, "train_sample": self.train_sample, "test": self.test}
        if name not in splits:
            raise UnknownSplit(f"unknown split {name!r}; splits are {', '.join(splits)}")
        return splits[name]

    @cached_property
    def train_sample(self) -> QASplit:
        """The questions of the first ``n_test_per_k`` training images of each k (the size of the
        test set): the training accuracy reported during training (CHOICE)."""
        t = self.train
        first = torch.zeros_like(t.k, dtype=torch.bool)
        starts = torch.arange(len(self.ks)) * self.cfg.n_train_per_k  # images are in blocks of k
        first[(starts[:, None] + torch.arange(self.cfg.n_test_per_k)).flatten()] = True
        return t.where(first[t.image], "train_sample")

    # ------------------------------------------------------------------ layouts
    def _draw_layouts(self, gen: torch.Generator, k: int, n: int) -> tuple[Tensor, Tensor]:
        """``n`` random layouts of ``k`` objects in distinct rows and columns: (rows, cols) [n, k]."""
        return _first_k(gen, n, self.cfg.height, k), _first_k(gen, n, self.cfg.width, k)

    def _distinct_layouts(self, gen: torch.Generator, k: int, n: int) -> tuple[Tensor, Tensor]:
        """``n`` layouts with distinct occupancies, in the order drawn (draws more until enough)."""
        rows, cols = self._draw_layouts(gen, k, 4 * n + 64)
        while True:
            keep = first_occurrences(occupancy(rows, cols, self.cfg.height, self.cfg.width))
            if len(keep) >= n:
                keep = keep[:n]
                return rows[keep], cols[keep]
            more = self._draw_layouts(gen, k, 4 * n + 64)
            rows, cols = torch.cat([rows, more[0]]), torch.cat([cols, more[1]])

    def _layouts_avoiding(self, gen: torch.Generator, k: int, n: int, taken: Bool[Tensor, "m cells"]) -> tuple[Tensor, Tensor]:
        """``n`` random layouts whose occupancy is none of ``taken`` (rejection, whole batches)."""
        rows, cols = rows_out, cols_out = self._draw_layouts(gen, k, 0)
        while len(rows_out) < n:
            rows, cols = self._draw_layouts(gen, k, 2 * n + 64)
            ok = ~rows_in(occupancy(rows, cols, self.cfg.height, self.cfg.width), taken)
            rows_out, cols_out = torch.cat([rows_out, rows[ok]]), torch.cat([cols_out, cols[ok]])
        return rows_out[:n], cols_out[:n]

    # ---------------------------------------------------------------- questions
    def _split(self, name: str, parts: list[tuple[Tensor, Tensor, Tensor]], gen: torch.Generator) -> QASplit:
        """Images from (objects, rows, cols) blocks of one k each, with one question per category."""
        cfg, slots = self.cfg, self.cfg.max_objects
        pad = lambda x: torch.nn.functional.pad(x, (0, slots - x.shape[1]), value=-1)  # noqa: E731
        objects = torch.cat([pad(o) for o, _, _ in parts])
        rows, cols = torch.cat([pad(r) for _, r, _ in parts]), torch.cat([pad(c) for _, _, c in parts])
        k = torch.cat([torch.full((len(o),), o.shape[1]) for o, _, _ in parts])
        pixels = torch.zeros(len(k), cfg.n_pixels + 1, dtype=torch.long)  # last column: dump for empty slots
        cells = torch.where(objects >= 0, rows * cfg.width + cols, cfg.n_pixels)
        pixels.scatter_(1, cells, objects.clamp(min=0))
        questions = [self._questions(o, r, c, gen) for o, r, c in parts]  # per block: [n, 6, ...] each
        offsets = torch.cumsum(torch.tensor([0] + [len(o) for o, _, _ in parts[:-1]]), 0)
        fieldwise = {key: torch.cat([q[key] for q in questions]).flatten(0, 1) for key in questions[0]}
        image = torch.cat([off + torch.arange(len(o))[:, None].expand(-1, len(CATEGORIES)) for off, (o, _, _) in zip(offsets, parts)])
        category = torch.arange(len(CATEGORIES)).repeat(len(k))
        return QASplit(name, pixels[:, :-1], objects, rows, cols, k, image.flatten(), category, **fieldwise)

    def _questions(self, objects: Tensor, rows: Tensor, cols: Tensor, gen: torch.Generator) -> dict[str, Tensor]:
        """One question per category for each image of a block with the same k: tensors [n, 6, ...]."""
        v, n, k = self.vocab, *objects.shape
        color = v.first_color + (objects - 1) // self.cfg.n_shapes  # [n, k] colour tokens
        shape = v.first_shape + (objects - 1) % self.cfg.n_shapes
        take = lambda x, slot: x.gather(1, slot[:, None])[:, 0]  # noqa: E731  x[i, slot[i]]
        question = torch.full((n, len(CATEGORIES), QUESTION_LEN), v.pad)
        answer = torch.full((n, len(CATEGORIES), ANSWER_LEN), v.pad)
        subject, other, direction = (torch.full((n, len(CATEGORIES)), -1) for _ in range(3))
        for cat in ABSOLUTE:  # the object at the extreme of a random direction (unique: rows/cols distinct)
            d = torch.randint(0, 4, (n,), generator=gen)
            coord = torch.where((d < 2)[:, None], rows, cols)  # top/bottom read rows, left/right columns
            sign = torch.where(d % 2 == 0, 1, -1)[:, None]  # top/left: smallest, bottom/right: largest
            target = (coord * sign).argmin(1)
            words = {0: (v.what_color, [color]), 2: (v.what_shape, [shape]), 4: (v.what_object, [color, shape])}[cat]
            question[:, cat, 0], question[:, cat, 1] = words[0], v.first_direction + d
            said = [take(x, target) for x in words[1]]
            answer[:, cat, : len(said) + 1] = torch.stack([*said, torch.full((n,), v.eot)], 1)
            subject[:, cat], direction[:, cat] = target, d
        for cat in RELATIVE:  # two distinct objects, an axis, and the answer drawn balanced
            a = torch.randint(0, k, (n,), generator=gen)
            b = (a + torch.randint(1, k, (n,), generator=gen)) % k
            vertical = torch.randint(0, 2, (n,), generator=gen).bool()
            yes = torch.rand(n, generator=gen).argsort() < n // 2  # exactly n // 2 yes
            coord = torch.where(vertical[:, None], rows, cols)
            true_rel = 2 * vertical.long() + (take(coord, a) > take(coord, b)).long()  # left/right of, above/below
            rel = torch.where(yes, true_rel, true_rel ^ 1)
            name = {1: [color], 3: [shape], 5: [color, shape]}[cat]
            first, second = [take(x, a) for x in name], [take(x, b) for x in name]
            words = torch.stack([torch.full((n,), v.is_), *first, v.first_relation + rel, *second], 1)
            question[:, cat, : words.shape[1]] = words
            answer[:, cat, 0], answer[:, cat, 1] = torch.where(yes, v.yes, v.no), v.eot
            subject[:, cat], other[:, cat], direction[:, cat] = a, b, rel
        return {"question": question, "answer": answer, "subject": subject, "other": other, "direction": direction}


# ---------------------------------------------------------------------- helpers
def n_layouts(height: int, width: int, k: int) -> int:
    """Occupancies of k cells in distinct rows and columns: C(H, k) C(W, k) k!."""
    return math.comb(height, k) * math.comb(width, k) * math.factorial(k)


def _first_k(gen: torch.Generator, n: int, m: int, k: int) -> Int[Tensor, "n k"]:
    """``n`` random draws of k distinct values of 0..m-1 (the first k of a random permutation)."""
    return torch.rand(n, m, generator=gen).argsort(-1)[:, :k]


def occupancy(rows: Int[Tensor, "n slots"], cols: Int[Tensor, "n slots"], height: int, width: int) -> Bool[Tensor, "n cells"]:
    """Which cells each image occupies (its layout, whatever the objects); -1 slots are empty."""
    out = torch.zeros(rows.shape[0], height * width + 1, dtype=torch.bool)
    out.scatter_(1, torch.where(rows >= 0, rows * width + cols, height * width), True)
    return out[:, :-1]


def rows_in(a: Tensor, b: Tensor) -> Bool[Tensor, " n"]:
    """For each row of ``a``: whether it equals some row of ``b``."""
    _, inverse = torch.unique(torch.cat([a, b]), dim=0, return_inverse=True)
    in_b = torch.zeros(int(inverse.max()) + 1 if len(inverse) else 0, dtype=torch.bool)
    in_b[inverse[len(a):]] = True
    return in_b[inverse[: len(a)]]


def first_occurrences(x: Tensor) -> Int[Tensor, " m"]:
    """Indices of the first occurrence of each distinct row of ``x``, in increasing order."""
    _, inverse = torch.unique(x, dim=0, return_inverse=True)
    first = torch.full((int(inverse.max()) + 1,), len(x)).scatter_reduce(0, inverse, torch.arange(len(x)), "amin")
    return first.sort().values
