"""Token vocabularies of the two modalities.

Pixel values and label tokens share numbers: label ``k`` is pixel value ``k`` in an image and
token ``k`` in a caption, so ``17`` reads the same on both sides.
"""

from __future__ import annotations

from dataclasses import dataclass

BACKGROUND = 0


@dataclass(frozen=True)
class Vocab:
    """Vision tokens: 0 background, 1..N labels, N+1 [CLS]. Text tokens: 0 <pad> (never used
    by the built-in worlds, whose captions all have length 4), 1..N labels, then the phrase
    tokens [is], [in the image], [is on the left of], [is on the right of], [EOT]."""

    n_labels: int

    @property
    def cls(self) -> int:
        return self.n_labels + 1

    @property
    def d_vocab_vision(self) -> int:
        return self.n_labels + 2

    # text side
    pad: int = 0

    @property
    def is_(self) -> int:
        return self.n_labels + 1

    @property
    def in_the_image(self) -> int:
        return self.n_labels + 2

    @property
    def left_of(self) -> int:
        return self.n_labels + 3

    @property
    def right_of(self) -> int:
        return self.n_labels + 4

    @property
    def eot(self) -> int:
        return self.n_labels + 5

    @property
    def d_vocab_text(self) -> int:
        return self.n_labels + 6

    def text_token_str(self, token: int) -> str:
        names = {
            self.pad: "<pad>",
            self.is_: "is",
            self.in_the_image: "in the image",
            self.left_of: "is on the left of",
            self.right_of: "is on the right of",
            self.eot: "[EOT]",
        }
        return names.get(token, str(token))

    def vision_token_str(self, token: int) -> str:
        if token == self.cls:
            return "[CLS]"
        return str(token)
