"""The synthetic spatial-relation world of Sec. 2.1 / App. A (and the 2D grid of App. K).

A `World` is built deterministically from a `WorldConfig`. It holds

* the caption table: every caption of the train and validation splits, the retrieval
  candidates of Sec. 2.3, as a ``[n_captions, 4]`` token tensor;
* the splits, each a `Split` of token tensors that can be fed straight to an encoder:

  ``train_single``  every label 1..N at n_1 random pixels
  ``train_pair``    every ordered pair of the N_pair training labels at n_2 random position pairs
  ``single_object`` every label at the pixels it never occupies in training
  ``seen_pair``     training label pairs at the position pairs held out for them
  ``unseen_pair``   ordered pairs of held-out labels (N_pair+1..N) at every position pair

and, in the three-object world of App. N (``max_objects=3``, A10.1),

  ``train_triple``  training-label triplets (ordered, or unordered with a random assignment) at
                    ``n_triple_positions`` random position triples each; its first true caption
                    is the one text drawn for it ("we randomly select one as the text pair")
  ``unseen_triple`` ordered triplets of held-out labels at every position triple (or a sample)

Labels 1..N_pair are the training labels and N_pair+1..N are held out, as in the paper. With
``unseen_pairs="heldout_combinations"`` (a control, ours) the held-out labels also appear in
``train_pair`` / ``seen_pair``, each beside a training label (both orders), and only the pairs
of two held-out labels stay unseen.
A two-object image with X left of Y (smaller column) is described by "X is on the left of Y";
with ``captions="bidirectional"`` also by "Y is on the right of X" (Sec. 7).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from functools import cached_property

import torch
from jaxtyping import Bool, Int
from torch import Tensor

from circuits.config import WorldConfig
from circuits.data import retrieval
from circuits.data.vocab import BACKGROUND, Vocab
from circuits.errors import CircuitsError, ConfigError
from circuits.tasks.base import Probe

CAPTION_LEN = 4


class UnknownSplit(CircuitsError, KeyError):
    """A split name the world does not have (a `KeyError` too, as ``world[name]`` is a lookup)."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


@dataclass(frozen=True)
class Split:
    """Images of one split with the objects they show and the captions true of them.

    ``objects`` and ``positions`` list the objects left to right (pixel index, CLS excluded),
    padded with -1; ``true_captions`` lists every caption id true of the image, padded with -1,
    the first being the canonical one ("X is on the left of Y").
    """

    name: str
    images: Int[Tensor, "n seq"]  # [CLS] followed by the pixels
    objects: Int[Tensor, "n k"]
    positions: Int[Tensor, "n k"]
    true_captions: Int[Tensor, "n t"]

    def __len__(self) -> int:
        return self.images.shape[0]

    @property
    def captions(self) -> Int[Tensor, " n"]:
        """The canonical caption id of each image."""
        return self.true_captions[:, 0]

    @property
    def n_objects(self) -> Int[Tensor, " n"]:
        return (self.objects >= 0).sum(-1)

    def to(self, device: torch.device | str) -> Split:
        return Split(self.name, *(t.to(device) for t in (self.images, self.objects, self.positions, self.true_captions)))

    def truth(self, n_captions: int) -> Bool[Tensor, "n n_captions"]:
        """``truth[i, c]``: caption c is a true description of image i."""
        out = torch.zeros(len(self), n_captions + 1, dtype=torch.bool, device=self.images.device)
        out.scatter_(1, torch.where(self.true_captions < 0, n_captions, self.true_captions), True)
        return out[:, :n_captions]

    def subset(self, index: Tensor | slice) -> Split:
        return Split(self.name, self.images[index], self.objects[index], self.positions[index], self.true_captions[index])

    @staticmethod
    def concat(name: str, parts: list[Split]) -> Split:
        def cat(attr: str) -> Tensor:
            width = max(getattr(p, attr).shape[1] for p in parts)
            padded = [torch.nn.functional.pad(getattr(p, attr), (0, width - getattr(p, attr).shape[1]), value=-1) for p in parts]
            return torch.cat(padded)

        return Split(name, torch.cat([p.images for p in parts]), cat("objects"), cat("positions"), cat("true_captions"))


SPLIT_NAMES = ("train_single", "train_pair", "single_object", "seen_pair", "unseen_pair")
EVAL_SPLITS = ("single_object", "seen_pair", "unseen_pair")
TRIPLE_SPLITS = ("train_triple", "unseen_triple")


class World:
    """Deterministic function of its `WorldConfig`: same config, same tensors.

    A `circuits.tasks.Task`: it gives the CLIP pair its sizes (`model_sizes`), scores a model by
    retrieval (`evaluate`) and marks the two objects of its inputs for head statistics (`probe`).
    """

    split_names: tuple[str, ...] = SPLIT_NAMES
    eval_splits: tuple[str, ...] = EVAL_SPLITS
    CHUNK = 4096  # images per forward pass in `similarity`

    def __init__(self, cfg: WorldConfig):
        cfg.validate()
        self.cfg = cfg
        if cfg.max_objects == 3:
            self.split_names = SPLIT_NAMES + TRIPLE_SPLITS
            self.eval_splits = EVAL_SPLITS + ("unseen_triple",)
        self.vocab = Vocab(cfg.n_labels)
        self.train_labels = list(range(1, cfg.n_pair_labels + 1))
        self.heldout_labels = list(range(cfg.n_pair_labels + 1, cfg.n_labels + 1))
        self._build_captions()
        self.splits: dict[str, Split] = self._build_splits()

    # ----------------------------------------------------------------- sizes
    @property
    def n_ctx_vision(self) -> int:
        return self.cfg.n_pixels + 1

    @property
    def n_ctx_text(self) -> int:
        return CAPTION_LEN

    @property
    def d_vocab_vision(self) -> int:
        return self.vocab.d_vocab_vision

    @property
    def d_vocab_text(self) -> int:
        return self.vocab.d_vocab_text

    @property
    def n_captions(self) -> int:
        return self.captions.shape[0]

    def model_sizes(self) -> dict[str, int]:
        """Constructor sizes of the CLIP pair for this world (`circuits.models.HookedCLIP`)."""
        return {
            "d_vocab_vision": self.d_vocab_vision,
            "n_ctx_vision": self.n_ctx_vision,
            "d_vocab_text": self.d_vocab_text,
            "n_ctx_text": self.n_ctx_text,
        }

    def column(self, pixel: int | Tensor) -> int | Tensor:
        """Horizontal coordinate of a pixel index (row-major layout)."""
        return pixel % self.cfg.width

    @cached_property
    def position_pairs(self) -> list[tuple[int, int]]:
        """All pixel pairs (a, b) with a strictly left of b, in a fixed order."""
        n = self.cfg.n_pixels
        return [(a, b) for a in range(n) for b in range(n) if self.column(a) < self.column(b)]

    @cached_property
    def position_triples(self) -> list[tuple[int, int, int]]:
        """All pixel triples (a, b, c) in strictly increasing columns, in a fixed order."""
        n, col = self.cfg.n_pixels, self.column
        return [(a, b, c) for a in range(n) for b in range(n) if col(a) < col(b) for c in range(n) if col(b) < col(c)]

    def __getitem__(self, name: str) -> Split:
        if name not in self.splits:
            raise UnknownSplit(f"unknown split {name!r}; splits are {', '.join(self.splits)}")
        return self.splits[name]

    @cached_property
    def train(self) -> Split:
        """All training images: single-object, two-object, then three-object (if any)."""
        names = ["train_single", "train_pair"] + (["train_triple"] if "train_triple" in self.splits else [])
        return Split.concat("train", [self.splits[n] for n in names])

    @cached_property
    def train_caption_ids(self) -> Int[Tensor, " n_train_captions"]:
        """Captions true of some training image (the texts the contrastive loss sees)."""
        ids = self.train.true_captions
        return torch.unique(ids[ids >= 0])

    # ------------------------------------------------------------- captions
    def _build_captions(self) -> None:
        v, cfg = self.vocab, self.cfg
        rows: list[list[int]] = [[k, v.is_, v.in_the_image, v.eot] for k in range(1, cfg.n_labels + 1)]
        pairs = (list(itertools.permutations(self.train_labels, 2)) + list(itertools.permutations(self.heldout_labels, 2))
                 + self.mixed_pairs)
        self._left_id = {}
        for x, y in pairs:
            self._left_id[(x, y)] = len(rows)
            rows.append([x, v.left_of, y, v.eot])
        self._right_id = {}
        if cfg.captions == "bidirectional":
            for x, y in pairs:  # "y is on the right of x" describes x left of y
                self._right_id[(x, y)] = len(rows)
                rows.append([y, v.right_of, x, v.eot])
        self.captions: Int[Tensor, "n_captions 4"] = torch.tensor(rows, dtype=torch.long)

    @cached_property
    def mixed_pairs(self) -> list[tuple[int, int]]:
        """Ordered (training, held-out) label pairs in both orders that training shows
        (``unseen_pairs="heldout_combinations"``); none in the paper's world."""
        if self.cfg.unseen_pairs != "heldout_combinations":
            return []
        return [pair for x in self.train_labels for y in self.heldout_labels for pair in ((x, y), (y, x))]

    @cached_property
    def caption_objects(self) -> Int[Tensor, "n_captions 2"]:
        """Labels each caption names (subject first; -1 where it names only one)."""
        named = self.captions[:, [0, 2]]
        return torch.where((named >= 1) & (named <= self.cfg.n_labels), named, -1)

    def caption_id(self, left: int, right: int | None = None, relation: str = "left") -> int:
        """Id of "left is in the image" (right=None), "left L right", or "right R left"."""
        if right is None:
            if not 1 <= left <= self.cfg.n_labels:
                raise KeyError(f"no label {left}")
            return left - 1
        table = self._left_id if relation == "left" else self._right_id
        if (left, right) not in table:
            raise KeyError(f"no {relation} caption for the pair ({left}, {right}) in this world")
        return table[(left, right)]

    def caption_text(self, caption: int | Tensor) -> str:
        tokens = self.captions[caption] if isinstance(caption, int) or caption.ndim == 0 else caption
        return " ".join(self.vocab.text_token_str(int(t)) for t in tokens if int(t) != self.vocab.eot)

    def true_caption_ids(self, x: int, y: int | None) -> list[int]:
        """Captions true of an image showing x alone, or x left of y."""
        if y is None:
            return [self.caption_id(x)]
        ids = [self.caption_id(x, y)]
        if self.cfg.captions == "bidirectional":
            ids.append(self.caption_id(x, y, relation="right"))
        return ids

    # --------------------------------------------------------------- images
    def make_images(self, objects: Int[Tensor, "n k"], positions: Int[Tensor, "n k"]) -> Int[Tensor, "n seq"]:
        """Token images ([CLS] + pixels) with ``objects[i, j]`` at pixel ``positions[i, j]`` (-1 = none)."""
        n = objects.shape[0]
        pixels = torch.full((n, self.cfg.n_pixels + 1), BACKGROUND, dtype=torch.long)  # last column: dump for -1
        pixels.scatter_(1, torch.where(positions < 0, self.cfg.n_pixels, positions), objects.clamp(min=0))
        cls = torch.full((n, 1), self.vocab.cls, dtype=torch.long)
        return torch.cat([cls, pixels[:, :-1]], dim=1)

    def parse_image(self, text: str) -> Int[Tensor, "1 seq"]:
        """Parse ``"0 0 17 0 19 0 0 0 0 0"`` (pixel values, row-major, no CLS) into a token image."""
        try:
            values = [int(t) for t in text.replace(",", " ").replace("|", " ").split()]
        except ValueError:
            raise ConfigError(f"image {text!r} must be {self.cfg.n_pixels} integers separated by spaces") from None
        if len(values) != self.cfg.n_pixels:
            raise ConfigError(f"image has {len(values)} pixels; this world's images have {self.cfg.n_pixels}")
        bad = [v for v in values if not 0 <= v <= self.cfg.n_labels]
        if bad:
            raise ConfigError(f"pixel value {bad[0]} out of range: use 0 (background) or a label 1..{self.cfg.n_labels}")
        return torch.tensor([[self.vocab.cls, *values]], dtype=torch.long)

    def image_text(self, image: Int[Tensor, " seq"]) -> str:
        """Pixels of one token image as text (CLS dropped), rows separated by ' | '."""
        px = [str(int(t)) for t in image[1:]]
        w = self.cfg.width
        return " | ".join(" ".join(px[r * w : (r + 1) * w]) for r in range(self.cfg.height))

    # --------------------------------------------------------------- splits
    def _build_splits(self) -> dict[str, Split]:
        cfg = self.cfg
        gen = torch.Generator().manual_seed(cfg.seed)
        n_px = cfg.n_pixels

        train_s, val_s = [], []
        for label in range(1, cfg.n_labels + 1):
            order = torch.randperm(n_px, generator=gen).tolist()
            train_s += [(label, p) for p in sorted(order[: cfg.n_single_positions])]
            val_s += [(label, p) for p in sorted(order[cfg.n_single_positions :])]

        pos_pairs = self.position_pairs
        train_p, seen_p, unseen_p = [], [], []
        for x, y in itertools.permutations(self.train_labels, 2):
            order = torch.randperm(len(pos_pairs), generator=gen).tolist()
            train_p += [(x, y, *pos_pairs[i]) for i in sorted(order[: cfg.n_pair_positions])]
            seen_p += [(x, y, *pos_pairs[i]) for i in sorted(order[cfg.n_pair_positions :])]
        for x, y in itertools.permutations(self.heldout_labels, 2):
            unseen_p += [(x, y, a, b) for a, b in pos_pairs]
        for x, y in self.mixed_pairs:  # after the paper's pairs: the default world's draws stay as they are
            order = torch.randperm(len(pos_pairs), generator=gen).tolist()
            train_p += [(x, y, *pos_pairs[i]) for i in sorted(order[: cfg.n_pair_positions])]
            seen_p += [(x, y, *pos_pairs[i]) for i in sorted(order[cfg.n_pair_positions :])]

        splits = {
            "train_single": self._single_split("train_single", train_s),
            "train_pair": self._pair_split("train_pair", train_p),
            "single_object": self._single_split("single_object", val_s),
            "seen_pair": self._pair_split("seen_pair", seen_p),
            "unseen_pair": self._pair_split("unseen_pair", unseen_p),
        }
        if cfg.max_objects == 3:  # drawn after everything else: the 1- and 2-object splits stay as they are
            splits.update(self._triple_splits(gen))
        return splits

    def _triple_splits(self, gen: torch.Generator) -> dict[str, Split]:
        """``train_triple`` and ``unseen_triple`` of App. N (A10.1), drawn from ``gen``."""
        cfg, triples = self.cfg, self.position_triples
        train: list[tuple[int, int, int, int, int, int]] = []  # objects left to right, then positions
        if cfg.triplets == "ordered":
            for labels in itertools.permutations(self.train_labels, 3):
                order = torch.randperm(len(triples), generator=gen).tolist()
                train += [(*labels, *triples[i]) for i in sorted(order[: cfg.n_triple_positions])]
        else:  # unordered: each configuration a random position triple and a random assignment
            for labels in itertools.combinations(self.train_labels, 3):
                order = torch.randperm(len(triples), generator=gen).tolist()
                for i in sorted(order[: cfg.n_triple_positions]):
                    perm = torch.randperm(3, generator=gen).tolist()
                    train.append((*(labels[j] for j in perm), *triples[i]))
        chosen = torch.randint(0, 3, (len(train),), generator=gen).tolist()  # the pair the text describes
        unseen = []
        for labels in itertools.permutations(self.heldout_labels, 3):
            if cfg.n_triple_test_positions is None:
                picked = range(len(triples))
            else:
                picked = sorted(torch.randperm(len(triples), generator=gen)[: cfg.n_triple_test_positions].tolist())
            unseen += [(*labels, *triples[i]) for i in picked]
        return {
            "train_triple": self._triple_split("train_triple", train, chosen),
            "unseen_triple": self._triple_split("unseen_triple", unseen, [0] * len(unseen)),
        }

    def _single_split(self, name: str, items: list[tuple[int, int]]) -> Split:
        objects = torch.tensor([[label] for label, _ in items], dtype=torch.long).reshape(-1, 1)
        positions = torch.tensor([[p] for _, p in items], dtype=torch.long).reshape(-1, 1)
        true = torch.tensor([[self.caption_id(label)] for label, _ in items], dtype=torch.long).reshape(-1, 1)
        return Split(name, self.make_images(objects, positions), objects, positions, true)

    def _pair_split(self, name: str, items: list[tuple[int, int, int, int]]) -> Split:
        width = 2 if self.cfg.captions == "bidirectional" else 1
        objects = torch.tensor([[x, y] for x, y, _, _ in items], dtype=torch.long).reshape(-1, 2)
        positions = torch.tensor([[a, b] for _, _, a, b in items], dtype=torch.long).reshape(-1, 2)
        true = torch.tensor([self.true_caption_ids(x, y) for x, y, _, _ in items], dtype=torch.long).reshape(-1, width)
        return Split(name, self.make_images(objects, positions), objects, positions, true)

    def triple_caption_ids(self, a: int, b: int, c: int, first: int = 0) -> list[int]:
        """Captions true of an image showing a, b, c left to right: those of the pairs (a, b),
        (a, c), (b, c); the pair ``first`` (0, 1, 2) leads (with all its captions)."""
        pairs = [(a, b), (a, c), (b, c)]
        pairs = [pairs[first]] + [p for i, p in enumerate(pairs) if i != first]
        return [cid for x, y in pairs for cid in self.true_caption_ids(x, y)]

    def _triple_split(self, name: str, items: list[tuple[int, ...]], first: list[int]) -> Split:
        width = 6 if self.cfg.captions == "bidirectional" else 3
        objects = torch.tensor([t[:3] for t in items], dtype=torch.long).reshape(-1, 3)
        positions = torch.tensor([t[3:] for t in items], dtype=torch.long).reshape(-1, 3)
        true = torch.tensor([self.triple_caption_ids(*t[:3], first=f) for t, f in zip(items, first)], dtype=torch.long)
        return Split(name, self.make_images(objects, positions), objects, positions, true.reshape(-1, width))

    def summary(self) -> dict[str, int]:
        """Sizes of every split and of the caption table."""
        return {**{name: len(s) for name, s in self.splits.items()}, "captions": self.n_captions}

    # ----------------------------------------------------------- the task
    @torch.no_grad()
    def caption_embeddings(self, model, pooled_only: bool = True) -> Tensor:
        """Unit-norm text embeddings of every candidate caption, [n_captions, d]."""
        captions = self.captions.to(model.device)
        return torch.nn.functional.normalize(model.encode_text(captions, pooled_only=pooled_only), dim=-1)

    @torch.no_grad()
    def image_embeddings(self, model, images: Int[Tensor, "n seq"], pooled_only: bool = True) -> Tensor:
        """Unit-norm image embeddings, [n, d], computed in chunks."""
        parts = [model.encode_image(chunk.to(model.device), pooled_only=pooled_only) for chunk in images.split(self.CHUNK)]
        return torch.nn.functional.normalize(torch.cat(parts), dim=-1)

    def similarity(self, model, images: Int[Tensor, "n seq"], pooled_only: bool = True) -> Tensor:
        """Cosine similarity of each image with every candidate caption, [n, n_captions]."""
        return self.image_embeddings(model, images, pooled_only) @ self.caption_embeddings(model, pooled_only).T

    def _truth(self, name: str, device: torch.device) -> Bool[Tensor, "n n_captions"]:
        """``self[name].truth(self.n_captions)`` on ``device``, built once (evaluation runs every
        few training steps)."""
        cache = self.__dict__.setdefault("_truth_cache", {})
        split, key = self[name], (name, str(device))
        if key not in cache or cache[key][0] is not split:
            cache[key] = (split, split.truth(self.n_captions).to(device))
        return cache[key][1]

    def evaluate(self, model, splits: tuple[str, ...] | None = None, pooled_only: bool = True) -> dict[str, float]:
        """Retrieval accuracy per split (true captions on top), plus ``label_set`` (App. H) and,
        for bidirectional captions, ``top1`` / ``top2`` of the unseen-pair split (Sec. 7)."""
        texts = self.caption_embeddings(model, pooled_only)
        out: dict[str, float] = {}
        for name in splits or self.eval_splits:
            split = self[name]
            sim = self.image_embeddings(model, split.images, pooled_only) @ texts.T
            truth = self._truth(name, sim.device)
            out[name] = retrieval.mean(retrieval.true_captions_on_top(sim, truth))
            if name == "unseen_pair":
                out["label_set"] = retrieval.mean(retrieval.label_set_correct(sim, split.objects, self.caption_objects))
                if self.cfg.captions == "bidirectional":
                    out["top1"] = retrieval.mean(retrieval.top1_correct(sim, truth))
                    out["top2"] = out[name]
                    out["pair_identity"] = retrieval.mean(
                        retrieval.pair_identity_correct(sim, split.objects, self.caption_objects))
            if name in TRIPLE_SPLITS:
                out.update({f"{k}" if name == "unseen_triple" else f"{name}_{k}": v
                            for k, v in retrieval.three_object_metrics(sim, truth).items()})
        return out

    def probe(self, split: str = "unseen_pair", encoder: str = "vision") -> Probe:
        """The two-object images of ``split`` (vision: first = left object, at its pixel + 1 for
        [CLS]) or the distinct two-object captions of its images (text: subject at word 0,
        object at word 2; [EOT] is the query)."""
        data = self[split]
        three = data.objects.shape[1] > 2 and bool((data.objects[:, 2] >= 0).any())
        if data.objects.shape[1] < 2 or bool((data.objects[:, 1] < 0).any()) or three:
            pairs = [n for n, s in self.splits.items() if s.objects.shape[1] == 2]
            raise CircuitsError(f"split {split!r} does not hold two-object images; use {', '.join(pairs)}")
        if encoder == "vision":
            pixels = torch.arange(self.cfg.n_pixels)
            columns = torch.cat([torch.tensor([-1]), pixels % self.cfg.width])
            rows = torch.cat([torch.tensor([-1]), pixels // self.cfg.width])
            return Probe(data.images, data.positions[:, 0] + 1, data.positions[:, 1] + 1, columns,
                         encoder="vision", split=split, names=("left", "right"), rows=rows)
        if encoder != "text":
            raise CircuitsError(f"unknown encoder {encoder!r}; encoders are vision, text")
        ids = torch.unique(data.true_captions[data.true_captions >= 0])
        n = len(ids)
        return Probe(self.captions[ids], torch.zeros(n, dtype=torch.long), torch.full((n,), 2),
                     torch.tensor([0, 1, 2, -1]), encoder="text", split=split, names=("subject", "object"))

    def position_labels(self, tokens: Int[Tensor, " pos"], encoder: str = "vision") -> list[str]:
        """``CLS, p0, p1, ...`` (pixel index) for an image, the words for a caption."""
        if encoder == "vision":
            return ["CLS"] + [f"p{i}" for i in range(len(tokens) - 1)]
        return [self.vocab.text_token_str(int(t)) for t in tokens]
