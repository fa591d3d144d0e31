"""Training phases and loss jumps from a run's metrics (App. D, Fig. 11).

The paper: "single-object positional, seen-pair configuration, and unseen-pair generalization are
achieved consecutively"; "in Phase 1, single-object positional generalization is achieved; in
Phase 2, seen-pair configuration generalization is achieved; and in Phase 3, unseen-pair
generalization is enhanced"; "We observe pronounced jumps in training loss near the
phase-1/phase-2 boundary, whereas any analogous signature at the phase-2/phase-3 boundary is weak
or absent."

The paper gives no thresholds; these are parameters of `training_phases` (defaults from the
spec, A3):

* ``t1`` = `stable_crossing` of single-object accuracy at ``tau`` = 0.99 (it must stay
  ≥ ``tau − slack`` = 0.97 afterwards), ``t2`` the same for seen-pair;
* ``t3`` = `relative_crossing`: first evaluation with unseen-pair ≥ ``unseen_fraction`` = 0.9 of
  its final value;
* phases [0, t1), [t1, t2), [t2, end);
* `loss_bumps`: ``bump(t) = (L(t) − min_{s≤t} L(s)) / min_{s≤t} L(s)``, and the largest bump in the
  windows ``t1 ± w`` and ``t2 ± w`` with ``w`` = ``window`` (5 %) of the run.

The loss is the per-step training loss (``step_losses`` of each metrics row, logged by
`circuits.train.train`) when the rows have it, else the loss logged at each evaluation (coarser;
``loss_source`` says which).
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass

import torch
from jaxtyping import Float, Int
from torch import Tensor

from circuits.checkpoint import read_metrics
from circuits.errors import CircuitsError

ACCURACIES = ("single_object", "seen_pair", "unseen_pair")


def stable_crossing(
    steps: Int[Tensor, " n"], values: Float[Tensor, " n"], tau: float = 0.99, slack: float = 0.02
) -> int | None:
    """First step whose value is ≥ ``tau`` and after which it never drops below ``tau − slack``
    (App. D, t1 / t2); None if there is none."""
    suffix_min = values.flip(0).cummin(0).values.flip(0)
    hit = ((values >= tau) & (suffix_min >= tau - slack)).nonzero()
    return int(steps[hit[0, 0]]) if len(hit) else None


def relative_crossing(steps: Int[Tensor, " n"], values: Float[Tensor, " n"], fraction: float = 0.9) -> int | None:
    """First step whose value is ≥ ``fraction`` × the final value (App. D, t3)."""
    hit = (values >= fraction * values[-1]).nonzero()
    return int(steps[hit[0, 0]]) if len(hit) else None


def loss_bumps(losses: Float[Tensor, " n"]) -> Float[Tensor, " n"]:
    """``bump(t) = (L(t) − m(t)) / m(t)`` with ``m(t) = min_{s≤t} L(s)`` (App. D loss jumps)."""
    running_min = losses.cummin(0).values
    return (losses - running_min) / running_min


@dataclass
class Phases:
    """`training_phases`' result. Steps are training steps; None where a boundary is never reached."""

    t1: int | None  # single-object accuracy reached (stably)
    t2: int | None  # seen-pair accuracy reached (stably)
    t3: int | None  # unseen-pair at `unseen_fraction` of its final value
    last_step: int
    consecutive: bool  # t1 <= t2 <= t3 (the paper's "achieved consecutively")
    bump_t1: float | None  # largest loss bump within t1 ± window
    bump_t1_step: int | None
    bump_t2: float | None
    bump_t2_step: int | None
    window: int  # half-width of the bump windows, in steps
    loss_source: str  # "step_losses" (every step) or "eval loss" (one value per evaluation)
    final: dict[str, float]

    @property
    def phases(self) -> list[tuple[int | None, int | None]]:
        """[start, end) of phases 1, 2, 3 (None: that boundary is never reached)."""
        return [(0, self.t1), (self.t1, self.t2), (self.t2, self.last_step)]

    def to_dict(self) -> dict:
        return asdict(self) | {"phases": self.phases}


def loss_curve(history: list[dict]) -> tuple[Int[Tensor, " n"], Float[Tensor, " n"], str]:
    """(steps, training loss, source): every step's loss from ``step_losses`` when every row has
    them, else the loss logged at each evaluation."""
    if history and all("step_losses" in r for r in history):
        losses = torch.tensor([x for r in history for x in r["step_losses"]], dtype=torch.float64)
        return torch.arange(1, len(losses) + 1), losses, "step_losses"
    rows = [r for r in history if "loss" in r]
    return (torch.tensor([int(r["step"]) for r in rows]), torch.tensor([float(r["loss"]) for r in rows], dtype=torch.float64),
            "eval loss")


def training_phases(
    history: list[dict] | str | os.PathLike,
    tau: float = 0.99,
    slack: float = 0.02,
    unseen_fraction: float = 0.9,
    window: float = 0.05,
) -> Phases:
    """Phase boundaries t1 ≤ t2 ≤ t3 and the loss bumps near t1 and t2 (App. D, Fig. 11) of a
    metrics history: a list of rows (``Run.history``), a checkpoint directory or a
    ``metrics.jsonl`` file. Thresholds: see the module docstring."""
    source = history
    if isinstance(history, (str, os.PathLike)):
        history = read_metrics(history)
    if not history:
        raise CircuitsError(f"{source if isinstance(source, (str, os.PathLike)) else 'the history'} has no metrics rows; "
                            "training phases need the accuracies logged during training")
    missing = [k for k in (*ACCURACIES, "step") if not all(k in r for r in history)]
    if missing:
        raise CircuitsError(f"metrics rows lack {', '.join(missing)}; training phases need step, "
                            f"{', '.join(ACCURACIES)} at every evaluation")
    steps = torch.tensor([int(r["step"]) for r in history])
    acc = {k: torch.tensor([float(r[k]) for r in history], dtype=torch.float64) for k in ACCURACIES}
    t1 = stable_crossing(steps, acc["single_object"], tau, slack)
    t2 = stable_crossing(steps, acc["seen_pair"], tau, slack)
    t3 = relative_crossing(steps, acc["unseen_pair"], unseen_fraction)
    last = int(steps[-1])
    w = max(1, round(window * last))
    loss_steps, losses, loss_source = loss_curve(history)
    bumps = loss_bumps(losses) if len(losses) else losses

    def largest(t: int | None) -> tuple[float | None, int | None]:
        if t is None or not len(bumps):
            return None, None
        inside = ((loss_steps >= t - w) & (loss_steps <= t + w)).nonzero()[:, 0]
        if not len(inside):
            return None, None
        i = inside[bumps[inside].argmax()]
        return float(bumps[i]), int(loss_steps[i])

    b1, s1 = largest(t1)
    b2, s2 = largest(t2)
    bounds = [t1, t2, t3]
    consecutive = None not in bounds and bounds == sorted(bounds)
    return Phases(t1, t2, t3, last, consecutive, b1, s1, b2, s2, w, loss_source,
                  {k: float(v[-1]) for k, v in acc.items()})
