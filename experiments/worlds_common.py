"""Shared plumbing of the App. K-Q reproductions (table4, table3, app_l, app_k, app_q, fig24, fig25).

Each script defines ``run(profile, seeds) -> (rows, markdown[, figures])``; `main` parses ``--quick`` /
``--seeds`` / ``--out`` and writes ``results.json`` (every number, the configs, the machine),
``results.md`` (the table beside the paper's numbers) and, if the script returns figures,
``figure.html``. ``--quick`` shrinks the world (8 labels), the models (d_model
32) and steps so each script runs in under ~30 s on 2 cores, into runs/<name>/quick (untracked);
the full profile uses the library defaults and writes into experiments/results/<name>/.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

from circuits.config import RunConfig
from circuits.errors import CircuitsError
from circuits.runtime import run_script, set_threads

ROOT = Path(__file__).resolve().parent.parent
QUICK_WORLD = {  # fewer labels and layouts (explicit overrides of a script win over these)
    "world.n_labels": 8, "world.n_pair_labels": 5, "world.n_single_positions": 3, "world.n_pair_positions": 4,
}
QUICK = {  # small and short: a smoke test of the pipeline, not a reproduction
    "model.vision.d_model": 32, "model.vision.d_head": 8, "model.text.d_model": 32, "model.text.d_head": 8,
    "train.steps": 120, "train.eval_every": 120, "train.lr": 3e-3,
}


_DEVICE = ["cpu"]  # set by `reproduce_main`'s --device (e.g. a full run on a GPU)


def device() -> str:
    """The device the entry trains on (``--device``, default cpu)."""
    return _DEVICE[0]


def set_device(name: str) -> None:
    """Train the entry's models on ``name`` (checked first: one line if this machine lacks it)."""
    from circuits.runtime import check_device

    check_device(name)
    _DEVICE[0] = name


def config(overrides: dict, quick: bool, seed: int = 0) -> RunConfig:
    """Library defaults, then ``overrides``, then the quick profile (if ``quick``), then the device
    (``--device``) and the seed."""
    extra = {**QUICK, **{k: v for k, v in overrides.items() if k.startswith("train.steps")}} if quick else {}
    world = QUICK_WORLD if quick else {}
    return RunConfig().with_overrides({**world, **overrides, **extra, "train.device": _DEVICE[0], "train.seed": seed})


def mean_std(values: list[float]) -> str:
    values = [v for v in values if v == v]
    if not values:
        return "n/a"
    if len(values) == 1:
        return f"{values[0]:.2f}"
    return f"{statistics.mean(values):.2f} ± {statistics.stdev(values):.2f}"


def pct(values: list[float]) -> str:
    values = [v for v in values if v == v]
    if not values:
        return "n/a"
    m = statistics.mean(values) * 100
    return f"{m:.0f}%" if len(values) == 1 else f"{m:.0f} ± {statistics.stdev(values) * 100:.0f}%"


def reproduce_main(name: str, run: Callable[[bool, list[int]], tuple[list[dict], str]], argv: list[str] | None = None,
                   default_seeds: int = 1, merge: Callable[[list[dict]], str] | None = None) -> int:
    """Parse ``--quick`` / ``--seeds`` / ``--out`` / ``--force``, run, write results.json and
    results.md (never over an earlier result without ``--force``). With ``merge`` (the entry's
    rows -> markdown), ``--merge DIR ...`` joins the rows of earlier runs instead of training:
    the seeds of a long entry run in parallel (``--first-seed``), then merged."""
    parser = argparse.ArgumentParser(prog=f"lenscli reproduce {name}", description=sys.modules[run.__module__].__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny models, few steps (CI smoke test, <~30 s)")
    parser.add_argument("--seeds", type=int, default=default_seeds, help="training seeds 0..S-1")
    parser.add_argument("--first-seed", type=int, default=0, metavar="F",
                        help="start the seeds at F (F..F+S-1), e.g. to run the seeds of a long entry in parallel")
    parser.add_argument("--out", type=Path, default=None, help="output directory")
    parser.add_argument("--force", action="store_true", help="replace results already in the output directory")
    parser.add_argument("--device", default="cpu", help="train on this device (cpu, cuda[:N]; default cpu)")
    if merge is not None:
        parser.add_argument("--merge", type=Path, nargs="+", metavar="DIR",
                            help="write the rows of these earlier results (e.g. one seed each) as one result; trains nothing")
    args = parser.parse_args(argv)
    if getattr(args, "merge", None):
        return _merge(name, merge, args.merge, args.out or ROOT / "experiments" / "results" / name, args.force)
    set_threads(1)
    set_device(args.device)
    out = args.out or (ROOT / "runs" / name / "quick" if args.quick else ROOT / "experiments" / "results" / name)
    if (out / "results.json").exists() and not args.force:
        raise CircuitsError(f"{out} already holds results; pass --force to replace them or choose another --out")
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    if args.seeds < 1 or args.first_seed < 0:
        raise CircuitsError(f"--seeds must be >= 1 and --first-seed >= 0 (got {args.seeds}, {args.first_seed})")
    rows, markdown, *figures = run(args.quick, list(range(args.first_seed, args.first_seed + (1 if args.quick else args.seeds))))
    seconds = time.perf_counter() - start
    meta = {"name": name, "profile": "quick" if args.quick else "full", "seconds": round(seconds, 1),
            "machine": platform.machine(), "python": platform.python_version(), "device": args.device}
    note = _write(out, meta, rows, markdown)
    if figures and figures[0]:  # an optional third element: the entry's figures, on one page
        from circuits.report import write_figures

        write_figures(figures[0], out / "figure.html", title=f"{name} ({meta['profile']} profile)", force=True)
    print(markdown + note)
    print(f"wrote {out}", file=sys.stderr)
    return 0


def _write(out: Path, meta: dict, rows: list[dict], markdown: str) -> str:
    """results.json (atomically, last) and results.md; returns the markdown's closing note."""
    note = f"\n_{meta['profile']} profile, {len(set(r.get('seed', 0) for r in rows))} seed(s), {meta['seconds']:.0f} s._\n"
    (out / "results.md").write_text(markdown + note)
    tmp = out / "results.json.tmp"
    tmp.write_text(json.dumps({"meta": meta, "rows": rows}, indent=1, default=str) + "\n")
    tmp.replace(out / "results.json")
    return note


def _merge(name: str, merge: Callable[[list[dict]], str], dirs: list[Path], out: Path, force: bool) -> int:
    """``--merge``: one result from the rows of several (seeds run apart); seconds are summed."""
    parts = []
    for d in dirs:
        if not (d / "results.json").is_file():
            raise CircuitsError(f"{d} holds no results.json to merge")
        parts.append(json.loads((d / "results.json").read_text()))
        if parts[-1]["meta"].get("name") != name or parts[-1]["meta"].get("profile") != "full":
            raise CircuitsError(f"{d} holds a {parts[-1]['meta'].get('profile')} result of "
                                f"{parts[-1]['meta'].get('name')!r}, not a full {name!r} result")
    if (out / "results.json").exists() and not force:
        raise CircuitsError(f"{out} already holds results; pass --force to replace them or choose another --out")
    rows = [r for p in parts for r in p["rows"]]
    meta = {**parts[0]["meta"], "seconds": round(sum(p["meta"]["seconds"] for p in parts), 1),
            "device": ", ".join(sorted({p["meta"].get("device", "cpu") for p in parts})),
            "note": f"{len(parts)} runs merged (seconds summed: they may have run in parallel)"}
    out.mkdir(parents=True, exist_ok=True)
    markdown = merge(rows)
    note = _write(out, meta, rows, markdown)
    print(markdown + note)
    print(f"wrote {out}", file=sys.stderr)
    return 0


def entry(main: Callable[[list[str] | None], int]) -> None:
    """Run a script's ``main`` as lenscli runs a command (one-line errors, exit 2)."""
    sys.exit(run_script(main))
