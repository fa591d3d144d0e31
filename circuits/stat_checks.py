"""Consistency checks between head statistics (Sec. 4-5, App. E, F, R).

* `bias_checks` (Fig. 4c vs Fig. 5d; App. F): per head, the argmax left/right difference
  ``|P_left − P_right|`` beside the relational fraction ``P_relational`` (the paper: "the
  difference in the probability of attending to the left versus right object is approximately
  equal to the probability that each head attends to the two objects in a relational manner"),
  and whether the sign of the EP slope along the pooled row is that of ``P_right − P_left``
  (App. F: monotonic EP patterns "consistent with the bias in Fig. 4(c)"). The App. E spread
  shares are `circuits.stats.term_spread`; the paper's percentages were lost in extraction, so
  there is no reference to compare them with.
* `gradient_terms` (App. R, Fig. 27): every layer-0 term's monotonicity, slope and spread share
  on the pooled row (sources E, P, N = LayerNorm β, B on a pre-LN model: the 9 LayerNorm terms
  plus the bias terms), which terms carry a gradient (``|Spearman| ≥ threshold`` in some head;
  CHOICE 0.8) and whether those are exactly the key-position terms (key source P). The paper:
  "the [lost], [lost] and [lost] terms exhibit horizontal attention gradients consistent with
  those identified in the attention-only model" (INFERRED: ÊP̂, P̂P̂, βP̂).
"""

from __future__ import annotations

from circuits.models import HookedCLIP, HookedEncoder
from circuits.models.terms import E, P, key_source, term_name
from circuits.stats import head_bias, spread_and_gradients
from circuits.tasks import Probe

Model = HookedCLIP | HookedEncoder


def _sign(x: float) -> int:
    return (x > 0) - (x < 0)


def bias_checks(model: Model, probe: Probe) -> list[dict]:
    """One row per head: ``argmax_difference`` = |P_left − P_right|, ``relational`` and their
    ``gap``; ``ep_slope`` and ``ep_sign_matches_bias`` (None without an EP term)."""
    bias = head_bias(model, probe, 0)
    _, grads = spread_and_gradients(model, probe, 0, spread_terms=(), gradient_terms=None)
    ep = grads.get(term_name(E, P))
    rows = []
    for h, (first, second, rel) in enumerate(zip(bias.argmax_first, bias.argmax_second, bias.relational)):
        diff = abs(first - second)
        slope = None if ep is None else ep.slope[h]
        rows.append({"head": h, "argmax_difference": diff, "relational": rel,
                     "gap": None if rel is None else diff - rel, "ep_slope": slope,
                     "ep_sign_matches_bias": None if slope is None else _sign(slope) == _sign(second - first)})
    return rows


def gradient_terms(model: Model, probe: Probe, threshold: float = 0.8) -> dict:
    """Layer-0 terms of the pooled row with their monotonicity, slope and spread share per head,
    the terms with a gradient, and whether they are exactly the key-position (key source P) terms."""
    spread, grads = spread_and_gradients(model, probe, 0)
    single = [t for t in grads if "+" not in t]
    with_gradient = [t for t in single if max(abs(m) for m in grads[t].monotonicity) >= threshold]
    key_position = [t for t in single if key_source(t) == P]
    return {
        "terms": {t: {"monotonicity": grads[t].monotonicity, "slope": grads[t].slope, "share": spread[t]} for t in grads},
        "threshold": threshold,
        "with_gradient": with_gradient,
        "key_position_terms": key_position,
        "exactly_key_position": sorted(with_gradient) == sorted(key_position),
    }
