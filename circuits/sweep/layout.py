"""A sweep directory on disk, and reading it back as one table.

::

    OUT/sweep.toml            the spec, as given (updated when values are added)
    OUT/sweep.json            what identifies the sweep (base config, swept keys) and its runs
    OUT/runs/<run-id>/        one checkpoint per run (`lenscli train`'s format; `circuits.load`)
    OUT/failed/<run-id>.json  a failed run's one-line reason (removed when it succeeds later)
    OUT/analysis/<run-id>.json  cached `sweep analyze` columns of a run
    OUT/results.csv           one row per run (rewritten after every run; `load_results`)

A run is finished exactly when ``runs/<run-id>/config.json`` exists: checkpoints are renamed
into place when complete (`circuits.atomic`), so a killed sweep never leaves a half-written run
that looks finished. Every small file here is written to a temporary name and renamed.
"""

from __future__ import annotations

import json
import math
import os
import socket
import tempfile
from pathlib import Path
from typing import Any

from circuits.atomic import OWNER, TMP_TAG, process_alive
from circuits.checkpoint import CONFIG, read_metrics
from circuits.errors import CircuitsError
from circuits.sweep.spec import SEED, SweepError, SweepSpec

SPEC_COPY, IDENTITY, RUNS, FAILED, ANALYSIS, RESULTS = "sweep.toml", "sweep.json", "runs", "failed", "analysis", "results.csv"
STATUSES = ("done", "failed", "running", "pending")
TARGET_METRIC, TARGET_VALUE = "unseen_pair", 0.9


def write_atomic(path: Path, text: str) -> None:
    """``text`` into ``path`` via a temporary sibling and a rename (never half a file)."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


class SweepDir:
    """The directory ``out`` of a sweep (nothing is created until `prepare`)."""

    def __init__(self, out: str | os.PathLike[str]):
        self.path = Path(os.path.abspath(out))

    # ------------------------------------------------------------------ paths
    def run_dir(self, run_id: str) -> Path:
        return self.path / RUNS / run_id

    def is_done(self, run_id: str) -> bool:
        return (self.run_dir(run_id) / CONFIG).is_file()

    def _failure(self, run_id: str) -> Path:
        return self.path / FAILED / f"{run_id}.json"

    def analysis_file(self, run_id: str) -> Path:
        return self.path / ANALYSIS / f"{run_id}.json"

    # ------------------------------------------------------------------ opening
    def check(self, spec: SweepSpec | None, force: bool) -> None:
        """Raise (one line) unless this sweep may be written to ``out``; writes nothing."""
        p = self.path
        if p.exists() and not p.is_dir():
            raise SweepError(f"{p} exists and is not a directory; choose another --out")
        if not p.is_dir() or not any(p.iterdir()):
            return
        if not (p / IDENTITY).is_file():
            raise SweepError(f"{p} is not empty and holds no sweep ({IDENTITY}); choose another --out")
        if spec is None:
            return
        old = self.read_identity()
        if old.get("identity") != spec.identity() and not force:
            what = "base config" if old.get("identity", {}).get("base") != spec.identity()["base"] else "swept keys or seed rule"
            raise SweepError(f"{p} holds a different sweep (its {what} differs from {spec.source}); "
                             "use another --out, or --force to switch it to this spec (finished runs are kept)")

    def prepare(self, spec: SweepSpec, runs: list, force: bool) -> None:
        """Check, then create ``out`` and record the spec and its runs."""
        self.check(spec, force)
        try:
            for sub in ("", RUNS, FAILED, ANALYSIS):
                (self.path / sub).mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise SweepError(f"cannot create {self.path}: {e.strerror or e}") from None
        identity = {"identity": spec.identity(), "columns": spec.columns(), "source": spec.source,
                    "runs": [{"run_id": r.run_id, "values": r.values} for r in runs]}
        write_atomic(self.path / SPEC_COPY, spec.text if spec.text is not None else to_toml(spec.to_dict()))
        write_atomic(self.path / IDENTITY, json.dumps(identity, indent=1) + "\n")

    def read_identity(self) -> dict[str, Any]:
        file = self.path / IDENTITY
        if not self.path.exists():
            raise SweepError(f"sweep directory {self.path} does not exist")
        try:
            return json.loads(file.read_text())
        except FileNotFoundError:
            raise SweepError(f"{self.path} holds no sweep ({IDENTITY} is missing)") from None
        except (OSError, json.JSONDecodeError) as e:
            raise SweepError(f"cannot read {file}: {e}") from None

    # ------------------------------------------------------------------ failures
    def record_failure(self, run_id: str, reason: str) -> None:
        write_atomic(self._failure(run_id), json.dumps({"run_id": run_id, "error": reason}) + "\n")

    def clear_failure(self, run_id: str) -> None:
        self._failure(run_id).unlink(missing_ok=True)

    def failure(self, run_id: str) -> str | None:
        try:
            return json.loads(self._failure(run_id).read_text())["error"]
        except (OSError, ValueError, KeyError):
            return None

    def is_running(self, run_id: str) -> bool:
        """A live process on this host is writing the run (its temporary directory's owner)."""
        host = socket.gethostname()
        for tmp in (self.path / RUNS).glob(f".{run_id}.{TMP_TAG}-*"):
            try:
                owner_host, pid = (tmp / OWNER).read_text().split()
                if owner_host != host or process_alive(int(pid)):
                    return True
            except (OSError, ValueError):
                continue
        return False

    # ------------------------------------------------------------------ the table
    def rows(self, with_analysis: bool = True) -> list[dict[str, Any]]:
        """One row per run of the recorded spec: id, status, swept values, final metrics, ..."""
        ident = self.read_identity()
        rows = []
        for entry in ident["runs"]:
            run_id = entry["run_id"]
            row: dict[str, Any] = {"run_id": run_id, "status": "pending", **entry["values"]}
            if self.is_done(run_id):
                row["status"] = "done"
                row.update(final_metrics(self.run_dir(run_id)))
                if with_analysis:
                    row.update(self.analysis(run_id))
            elif self.failure(run_id) is not None:
                row["status"], row["error"] = "failed", self.failure(run_id)
            elif self.is_running(run_id):
                row["status"] = "running"
            rows.append(row)
        return rows

    def analysis(self, run_id: str) -> dict[str, Any]:
        try:
            return json.loads(self.analysis_file(run_id).read_text()).get("columns", {})
        except (OSError, ValueError):
            return {}

    def write_results(self) -> Path:
        frame = load_results(self.path)
        write_atomic(self.path / RESULTS, frame.to_csv(index=False))
        return self.path / RESULTS


def final_metrics(run_dir: Path) -> dict[str, Any]:
    """The last metrics row of a finished run, its training seconds, the first evaluation step at
    which unseen-pair accuracy reached 0.9 (NaN if never) and its best unseen-pair accuracy at
    any evaluation (a model can generalize and then lose it: App. C in docs/reproduction.md)."""
    history = read_metrics(run_dir)
    if not history:
        return {}
    last = {k: v for k, v in history[-1].items() if k != "seconds"}
    reached = next((h["step"] for h in history if h.get(TARGET_METRIC, -1) >= TARGET_VALUE), math.nan)
    best = max((h[TARGET_METRIC] for h in history if TARGET_METRIC in h), default=math.nan)
    return {**last, "train_seconds": history[-1].get("seconds", math.nan), f"step_{TARGET_METRIC}_{TARGET_VALUE}": reached,
            f"best_{TARGET_METRIC}": best}


def load_results(out: str | os.PathLike[str]):
    """The sweep in ``out`` as a `pandas.DataFrame`, one row per run (read from the run
    directories, so always current): ``run_id``, ``status``, every swept key and ``seed``, the
    final metrics of every split, ``train_seconds``, ``step_unseen_pair_0.9``, ``best_unseen_pair`` and any
    `analyze` columns. ``summarize(frame)`` gives mean ± std over seeds."""
    import pandas as pd

    sweep = SweepDir(out)
    ident = sweep.read_identity()
    frame = pd.DataFrame(sweep.rows())
    frame.attrs["swept"] = [c for c in ident["columns"] if c != SEED]
    return frame


def summarize(frame, metrics: list[str] | None = None, by: list[str] | None = None):
    """Mean, std and count of ``metrics`` (default: every numeric column of finished runs) over
    the runs of each group of ``by`` (default: every swept key but the seed)."""
    done = frame[frame["status"] == "done"]
    by = list(frame.attrs.get("swept", []) if by is None else by)
    skip = {"run_id", "status", "error", SEED, "step", *by}
    if metrics is None:
        metrics = [c for c in done.columns if c not in skip and _numeric(done[c])]
    if not by:  # one group: one row, the same (metric, stat) columns as when grouped
        return done[metrics].agg(["mean", "std", "count"]).unstack().to_frame().T
    return done.groupby(by, dropna=False)[metrics].agg(["mean", "std", "count"])


def _numeric(column) -> bool:
    import pandas as pd

    return pd.api.types.is_numeric_dtype(column)


def to_toml(data: dict[str, Any]) -> str:
    """A spec dict as TOML (the subset specs use: scalars, lists, tables, lists of tables)."""
    def value(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, (int, float, str)):
            return json.dumps(v)
        if isinstance(v, list):
            return "[" + ", ".join(value(x) for x in v) + "]"
        raise CircuitsError(f"cannot write {v!r} in a TOML spec")

    lines, tables = [], []
    for k, v in data.items():
        if isinstance(v, dict):
            tables.append((k, v))
        elif isinstance(v, list) and v and all(isinstance(x, dict) for x in v):
            tables.extend((f"[{k}]", x) for x in v)
        elif isinstance(v, list) and not v and k == "zip":
            continue
        else:
            lines.append(f"{k} = {value(v)}")
    for name, table in tables:
        lines.append(f"\n[{name}]")
        for k, v in table.items():
            if isinstance(v, dict):
                lines.append(f"{json.dumps(k)} = {{ " + ", ".join(f"{json.dumps(a)} = {value(b)}" for a, b in v.items()) + " }")
            else:
                lines.append(f"{json.dumps(k)} = {value(v)}")
    return "\n".join(lines) + "\n"
