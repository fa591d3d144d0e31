"""`analyze_sweep`: the single-model analyses mapped over every finished run of a sweep.

For each run: zero-ablation accuracies (`circuits.ablate.evaluate_ablation`) of each named
ablation, and the vision heads' left/right bias (`circuits.stats.head_bias`) on unseen pairs.
Results are cached per run in ``OUT/analysis/<run-id>.json`` (only what is missing is
computed, so a rerun is instant) and appear as columns of `load_results`:

* ``ablate.<NAME>.<metric>`` - accuracy after zeroing NAME, e.g. ``ablate.EP+PP+BP.unseen_pair``;
  NAME joins score terms (``EP``, ``PP``, ``BP``, ...) and value sources (``VP``) with ``+``;
* ``bias.h<k>.left`` / ``.right`` / ``.relational`` per head, and ``bias.max_lr`` (the largest
  ``|left - right|`` over heads) with ``bias.relational_at_max``;
* ``top1.<class>`` - what the top caption of an unseen-pair image is (`circuits.failures.top1_breakdown`:
  correct, reversed, one_object, pair_one_label, unrelated; and training_caption).
"""

from __future__ import annotations

import json
import os
import re
from typing import Any, Callable, Sequence

from circuits.sweep.executors import map_processes
from circuits.sweep.layout import SweepDir, write_atomic
from circuits.sweep.spec import SweepError

ABLATION_NAME = re.compile(r"^[A-Z]{2}(\+[A-Z]{2})*$")


def parse_ablation(name: str):
    """``"EP+PP+BP+VP"`` -> ``Ablation(terms=("EP", "PP", "BP"), values=("P",))`` (vision encoder, all heads)."""
    from circuits.ablate import Ablation

    if not ABLATION_NAME.match(name):
        raise SweepError(f"ablation {name!r} must be score terms / value sources joined by '+', e.g. EP, EP+PP+BP, VP")
    parts = name.split("+")
    return Ablation(terms=tuple(p for p in parts if not p.startswith("V")), values=tuple(p[1] for p in parts if p.startswith("V")))


def analyze_run(run_dir: str, ablations: Sequence[str], bias: bool, threads: int | None = 1, top1: bool = False) -> dict[str, Any]:
    """The analysis columns of one checkpoint (see the module docstring)."""
    from circuits.ablate import evaluate_ablation
    from circuits.checkpoint import load
    from circuits.failures import top1_breakdown
    from circuits.runtime import set_threads
    from circuits.stats import head_bias

    set_threads(threads)
    run = load(run_dir)
    columns: dict[str, Any] = {}
    for name in ablations:
        for metric, value in evaluate_ablation(run.model, run.task, parse_ablation(name))["ablated"].items():
            columns[f"ablate.{name}.{metric}"] = value
    if bias:
        b = head_bias(run.model, run.task.probe())
        for h in range(len(b.first)):
            columns[f"bias.h{h}.left"], columns[f"bias.h{h}.right"] = b.first[h], b.second[h]
            columns[f"bias.h{h}.relational"] = b.relational[h]
        h = max(range(len(b.first)), key=lambda k: abs(b.first[k] - b.second[k]))
        columns["bias.max_lr"] = abs(b.first[h] - b.second[h])
        columns["bias.relational_at_max"] = b.relational[h]
    if top1:
        columns.update({f"top1.{k}": v for k, v in top1_breakdown(run.model, run.task).items()})
    return columns


def _job(args: tuple) -> tuple[str, dict[str, Any] | str]:
    run_id, run_dir, ablations, bias, top1 = args
    try:
        return run_id, analyze_run(run_dir, ablations, bias, top1=top1)
    except Exception as e:
        return run_id, f"{type(e).__name__}: {' '.join(str(e).split())}"


def analyze_sweep(
    out: str | os.PathLike[str],
    ablate: Sequence[str] = (),
    bias: bool = False,
    *,
    top1: bool = False,
    jobs: int | None = None,
    progress: bool = True,
    log: Callable[[str], None] | None = None,
) -> dict[str, str]:
    """Add the analysis columns to every finished run of the sweep in ``out`` (cached); returns
    the runs whose analysis failed (id -> reason) and rewrites ``results.csv``."""
    ablate = list(dict.fromkeys(ablate))
    for name in ablate:
        parse_ablation(name)
    if not ablate and not bias and not top1:
        raise SweepError("nothing to analyze: give --ablate NAMES (e.g. EP,PP,EP+PP+BP), --bias and/or --top1")
    sweep = SweepDir(out)
    ident = sweep.read_identity()
    todo = []
    for entry in ident["runs"]:
        run_id = entry["run_id"]
        if not sweep.is_done(run_id):
            continue
        have = sweep.analysis(run_id)
        missing = [n for n in ablate if not any(k.startswith(f"ablate.{n}.") for k in have)]
        need_bias = bias and "bias.max_lr" not in have
        need_top1 = top1 and "top1.correct" not in have
        if missing or need_bias or need_top1:
            todo.append((run_id, str(sweep.run_dir(run_id)), missing, need_bias, need_top1))
    failed: dict[str, str] = {}
    from tqdm.auto import tqdm

    bar = tqdm(total=len(todo), desc="analyze", unit="run", disable=not progress or not todo, dynamic_ncols=True)
    say = log or (bar.write if progress else (lambda line: None))

    def on_done(result: tuple[str, Any]) -> None:
        run_id, columns = result
        if isinstance(columns, str):
            failed[run_id] = columns
            say(f"FAILED analysis of {run_id}: {columns}")
        else:
            merged = {**sweep.analysis(run_id), **columns}
            write_atomic(sweep.analysis_file(run_id), json.dumps({"columns": merged}) + "\n")
        bar.update(1)

    sweep.analysis_file("x").parent.mkdir(exist_ok=True)
    try:
        map_processes(_job, todo, jobs or os.cpu_count() or 1, on_done)
    finally:
        bar.close()
    sweep.write_results()
    return failed
