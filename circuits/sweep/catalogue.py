"""The experiments catalogue: every reproduction of the project as a sweep spec in ``experiments/``.

A spec with an ``[experiment]`` table is an entry (its name is the file name)::

    [experiment]
    title = "Fig. 4(a): ..."                 # what it reproduces
    paper = "Fig. 4(a), Sec. 4"
    claim = "unseen-pair accuracy rises with N_pair ..."   # the paper's words, shown beside ours
    table = ["unseen_pair", "ablate.EP.unseen_pair"]        # columns of the markdown table
    [experiment.paper_values]                 # the paper's numbers, a row of that table
    "ablate.EP.unseen_pair" = "55% / 61%"
    [experiment.figure]                       # circuits.sweep.figures: lines | heatmap | bars
    kind = "lines"
    x = "world.n_pair_labels"
    line = "world.n_pair_positions"
    metrics = ["single_object", "seen_pair", "unseen_pair"]

`reproduce(name)` runs the sweep (resumably), then the spec's ``[analyze]``, and writes
``OUT/results.json``, ``OUT/results.md`` (the table beside the paper's numbers) and
``OUT/figure.html``. ``quick=True`` uses the spec's ``[quick]`` profile (a smoke test).

An experiment that is not a grid of trainings (pruning, failure analysis, several model kinds)
is a script ``experiments/NAME.py`` with a module-level ``EXPERIMENT = {"name", "title",
"paper"}`` literal and ``main(argv) -> int`` taking ``--quick``, ``--seeds``, ``--out`` and
``--force`` (`ScriptEntry`); it writes ``OUT/results.json`` and ``OUT/results.md`` too.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from circuits.sweep.spec import SweepError, SweepSpec

EXPERIMENTS = Path(__file__).resolve().parents[2] / "experiments"
DEFAULT_OUT = Path("runs") / "reproduce"


@dataclass
class Entry:
    name: str
    path: Path
    spec: SweepSpec

    @property
    def title(self) -> str:
        return self.spec.experiment.get("title", self.name)

    @property
    def paper(self) -> str:
        return self.spec.experiment.get("paper", "")

    def profile(self, quick: bool) -> SweepSpec:
        return self.spec.profile("quick") if quick else self.spec


@dataclass
class ScriptEntry:
    """An experiment written as a script (see the module docstring)."""

    name: str
    path: Path
    title: str
    paper: str
    time: str = ""  # measured / estimated wall time of the quick and full profiles, as the script states it
    aliases: tuple[str, ...] = ()  # other names the issue or the paper gives it (``fig24`` for ``fig25``)

    def run(self, *, quick: bool, out: Path, force: bool, seeds: int | None = None, first_seed: int = 0,
            device: str | None = None) -> int:
        """Import the script (its folder on ``sys.path`` for its shared helpers) and run its ``main``."""
        import importlib.util
        import sys

        folder = str(self.path.parent)
        if folder not in sys.path:
            sys.path.insert(0, folder)
        spec = importlib.util.spec_from_file_location(f"experiments_{self.path.stem}", self.path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        spec.loader.exec_module(module)
        return module.main([*(["--quick"] if quick else []), "--out", str(out), *(["--force"] if force else []),
                            *(["--seeds", str(seeds)] if seeds is not None else []),
                            *(["--first-seed", str(first_seed)] if first_seed else []),
                            *(["--device", device] if device is not None else [])])


def script_metadata(path: Path) -> dict[str, str] | None:
    """The ``EXPERIMENT`` literal of a script, read without importing it (None if it has none)."""
    import ast

    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "EXPERIMENT" for t in node.targets):
            return ast.literal_eval(node.value)
    return None


def entries(directory: Path = EXPERIMENTS) -> list[Entry | ScriptEntry]:
    """Every spec in ``directory`` with an ``[experiment]`` table and every script with an
    ``EXPERIMENT``, by name."""
    found: list[Entry | ScriptEntry] = []
    for path in sorted(directory.glob("*.toml")):
        spec = SweepSpec.load(path)
        if spec.experiment:
            found.append(Entry(path.stem, path, spec))
    for path in sorted(directory.glob("*.py")):
        meta = script_metadata(path)
        if meta:
            found.append(ScriptEntry(meta["name"], path, meta.get("title", meta["name"]), meta.get("paper", ""), meta.get("time", ""),
                                     tuple(meta.get("aliases", ()))))
    return sorted(found, key=lambda e: e.name)


def get(name: str, directory: Path = EXPERIMENTS) -> Entry | ScriptEntry:
    known = entries(directory)
    for entry in known:
        if entry.name == name or name in getattr(entry, "aliases", ()):
            return entry
    raise SweepError(f"unknown experiment {name!r}; the catalogue has {', '.join(e.name for e in known)} (lenscli reproduce --list)")


def estimate_seconds(spec: SweepSpec, jobs: int | None = None) -> float:
    """Rough wall time of training ``spec``'s runs on this many cores (`circuits.config.estimate_resources`,
    calibrated on the default model on one thread of an idle 2-core machine; analysis not counted)."""
    from circuits.config import estimate_resources

    runs = spec.expand()
    total = sum(estimate_resources(r.cfg).step_seconds * r.cfg.train.steps for r in runs)
    return total / max(1, min(jobs or os.cpu_count() or 1, len(runs)))


def reproduce(name: str, *, quick: bool = False, out: str | os.PathLike[str] | None = None, jobs: int | None = None,
              ensemble: Any = 1, backend: str = "local", address: str | None = None, force: bool = False,
              progress: bool = True, seeds: int | None = None, first_seed: int = 0, device: str | None = None,
              directory: Path = EXPERIMENTS) -> dict[str, Any]:
    """Run catalogue entry ``name`` into ``out`` (default ``runs/reproduce/NAME[-quick]``); returns results.json's content.

    ``seeds``: train seeds 0..seeds-1 instead of the entry's own (fewer for a first look; re-running
    the same ``out`` with more adds only the new runs). ``first_seed``: seeds F..F+N-1 instead
    (N = ``seeds`` or the entry's count; a script entry's seeds can then run apart and be
    ``--merge``d). ``device``: train there (a sweep's run ids leave the device out, so a sweep
    started on one device resumes on another)."""
    import dataclasses
    from circuits.sweep.analyze import analyze_sweep
    from circuits.sweep.layout import load_results, write_atomic
    from circuits.sweep.run import run_sweep

    entry = get(name, directory)
    out = Path(out) if out is not None else DEFAULT_OUT / (name + ("-quick" if quick else ""))
    if isinstance(entry, ScriptEntry):
        if jobs is not None or ensemble != 1 or backend != "local" or address is not None:
            raise SweepError(f"{name} is a script, not a sweep: --jobs, --ensemble, --backend and --address do not apply")
        if entry.run(quick=quick, out=out, force=force, seeds=seeds, first_seed=first_seed, device=device) != 0:
            raise SweepError(f"{name} failed")
        return json.loads((out / "results.json").read_text())
    spec = entry.profile(quick)
    if (seeds is not None and seeds < 1) or first_seed < 0:
        raise SweepError(f"--seeds must be >= 1 and --first-seed >= 0 (got {seeds}, {first_seed})")
    if seeds is not None or first_seed:
        spec = dataclasses.replace(spec, seeds=list(range(first_seed, first_seed + (seeds or len(spec.seeds)))))
    if device is not None:
        from circuits.runtime import check_device

        check_device(device)
        spec = dataclasses.replace(spec, set={**spec.set, "train.device": device})
    summary = run_sweep(spec, out, jobs=jobs, ensemble=ensemble, backend=backend, address=address, force=force, progress=progress)
    analysis = spec.analyze
    if analysis and summary.total > len(summary.failed):
        analyze_sweep(out, ablate=analysis.get("ablate", []), bias=bool(analysis.get("bias", False)),
                      top1=bool(analysis.get("top1", False)), jobs=jobs, progress=progress)
    frame = load_results(out)
    result = {"name": name, "title": entry.title, "paper": entry.paper, "claim": entry.spec.experiment.get("claim", ""),
              "profile": "quick" if quick else "full", "spec": str(entry.path), "summary": summary.line(),
              "failed": summary.failed, "groups": _groups(frame, _table_columns(entry, frame)),
              "runs": json.loads(frame.to_json(orient="records"))}  # NaN -> null
    out = Path(os.path.abspath(out))
    write_atomic(out / "results.json", json.dumps(result, indent=1, allow_nan=False) + "\n")
    write_atomic(out / "results.md", markdown(entry, result, frame))
    _write_figure(entry, frame, out / "figure.html")
    if summary.failed:
        raise SweepError(f"{len(summary.failed)} of {summary.total} runs failed (see {out / 'failed'}); the others are in {out / 'results.json'}")
    return result


def _table_columns(entry: Entry, frame) -> list[str]:
    cols = entry.spec.experiment.get("table", ["single_object", "seen_pair", "unseen_pair"])
    return [c for c in cols if c in frame.columns]


def _groups(frame, columns: list[str]) -> list[dict[str, Any]]:
    from circuits.sweep.layout import summarize

    if not columns or not (frame["status"] == "done").any():
        return []
    table = summarize(frame, metrics=columns)
    by = list(frame.attrs.get("swept", []))
    rows = []
    for index, rec in table.iterrows():
        key = index if isinstance(index, tuple) else (index,)
        row = dict(zip(by, key)) if by else {}
        for c in columns:
            std = rec[(c, "std")]
            mean = rec[(c, "mean")]
            row[c] = {"mean": None if math.isnan(mean) else float(mean), "std": None if math.isnan(std) else float(std),
                      "n": int(rec[(c, "count")])}
        rows.append(row)
    return rows


def _cell(stat: dict) -> str:
    if stat["mean"] is None:
        return "n/a"
    if stat["std"] is None:
        return f"{stat['mean']:.3f}"
    return f"{stat['mean']:.3f} ± {stat['std']:.3f}"


def markdown(entry: Entry, result: dict[str, Any], frame) -> str:
    """The results table (mean ± std over seeds per group) with the paper's numbers as a last row."""
    by = list(frame.attrs.get("swept", []))
    columns = _table_columns(entry, frame)
    lines = [f"# {entry.title}", "", f"Paper: {entry.paper}." if entry.paper else "", ""]
    if result["claim"]:
        lines += [f"The paper says: \"{result['claim']}\"", ""]
    lines += [f"Profile: {result['profile']} (spec `{entry.path.name}`). {result['summary']}", ""]
    header = [*by, "n", *columns]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in result["groups"]:
        n = row[columns[0]]["n"] if columns else 0
        lines.append("| " + " | ".join([*(str(row[k]) for k in by), str(n), *(_cell(row[c]) for c in columns)]) + " |")
    paper = entry.spec.experiment.get("paper_values", {})
    if paper:
        lines.append("| " + " | ".join(["paper", *([""] * len(by)), *(str(paper.get(c, "")) for c in columns)][:len(header)]) + " |")
    lines += ["", "Accuracies are fractions (mean ± std over seeds); `n` is the number of finished runs per row."]
    return "\n".join(lines) + "\n"


def _write_figure(entry: Entry, frame, path: Path) -> None:
    from circuits.report import figures_html, write_html

    fig = entry_figure(entry, frame)
    if fig is not None:
        write_html(figures_html([fig], entry.title), path, force=True)


def entry_figure(entry: Entry, frame):
    """The entry's ``[experiment.figure]`` drawn from a results frame (`load_results`, or a
    committed ``results.csv``): a plotly figure, or None when the entry has no figure or no
    finished run."""
    from circuits.sweep import figures as F

    spec = dict(entry.spec.experiment.get("figure", {}))
    if not spec or not (frame["status"] == "done").any():
        return None
    kind = spec.pop("kind", "lines")
    title = entry.title
    if kind == "lines":
        fig = F.metric_lines(frame, spec["x"], spec.get("metrics", ["unseen_pair"]), line=spec.get("line"), title=title,
                             x_category=spec.get("x_category", False))
    elif kind == "heatmap":
        fig = F.metric_heatmap(frame, spec["x"], spec["y"], spec.get("metric", "unseen_pair"), title=title)
    elif kind == "bars":
        fig = F.metric_bars(frame, spec["by"], spec["columns"], title=title, names=spec.get("names"))
    else:
        raise SweepError(f"{entry.path}: unknown figure kind {kind!r} (lines, heatmap, bars)")
    return fig
