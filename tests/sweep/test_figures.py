"""`metric_lines`: per value of the line key a mean line and a ± std band over seeds."""

from __future__ import annotations

import pandas as pd
import pytest

from circuits.sweep.figures import metric_lines


@pytest.fixture
def frame() -> pd.DataFrame:
    rows = [{"run_id": f"{x}-{n}-{s}", "status": "done", "x": x, "n": n, "seed": s, "acc": x / 10 + n / 100 + s / 1000}
            for x in (1, 2, 3) for n in (5, 10) for s in (0, 1, 2)]
    rows.append({"run_id": "failed", "status": "failed", "x": 1, "n": 5, "seed": 3, "acc": float("nan")})
    return pd.DataFrame(rows)


def test_each_line_is_the_mean_over_seeds_of_finished_runs(frame):
    fig = metric_lines(frame, "x", ["acc"], line="n")
    lines = {t.name: list(t.y) for t in fig.data if t.fill != "toself"}
    assert lines.keys() == {"n = 5", "n = 10"}
    assert lines["n = 5"] == pytest.approx([0.151, 0.251, 0.351])


def test_each_band_is_mean_plus_minus_std_and_draws_no_markers(frame):
    fig = metric_lines(frame, "x", ["acc"], line="n")
    bands = [t for t in fig.data if t.fill == "toself"]
    assert len(bands) == 2
    assert all(t.mode == "lines" for t in bands)
    upper = list(bands[0].y)[:3]
    assert upper == pytest.approx([0.151 + 0.001, 0.251 + 0.001, 0.351 + 0.001])
