"""``lenscli sweep run|status|table|analyze`` and ``lenscli reproduce``: thin skins over `circuits.sweep`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from lenscli.common import JsonOption, user_errors

app = typer.Typer(name="sweep", help="Populations of models: train a sweep spec into a directory, then tabulate and analyse it.",
                  no_args_is_help=True, add_completion=False, pretty_exceptions_show_locals=False)

OutArg = Annotated[Path, typer.Argument(help="Sweep directory (written by `lenscli sweep run`).", show_default=False)]
JobsOption = Annotated[Optional[int], typer.Option("--jobs", "-j", min=1, show_default=False,
                                                   help="Worker processes, one torch thread each.  [default: number of cores]")]
FAILED_EXIT = 1


def _ensemble(value: str) -> int | str:
    from circuits.sweep import SweepError

    if value == "auto":
        return value
    try:
        return int(value)
    except ValueError:
        raise SweepError(f"--ensemble must be a member count >= 1 or 'auto' (got {value!r})") from None


@app.command("run")
@user_errors
def run(
    spec: Annotated[Path, typer.Argument(help="Sweep spec (TOML, see docs/sweeps.md).", show_default=False)],
    out: Annotated[Path, typer.Option("--out", "-o", help="Sweep directory; rerunning into it resumes.", show_default=False)],
    jobs: JobsOption = None,
    ensemble: Annotated[str, typer.Option("--ensemble", help="Members trained together in one vectorised stack, or 'auto' (1 on CPU).")] = "1",
    backend: Annotated[str, typer.Option("--backend", help="local (worker processes) or ray.")] = "local",
    address: Annotated[Optional[str], typer.Option("--address", help="Ray cluster HOST:PORT (ray backend; default: a local Ray).", show_default=False)] = None,
    gpus_per_run: Annotated[float, typer.Option("--gpus-per-run", help="Fraction of a GPU per run (ray backend).")] = 0.0,
    force: Annotated[bool, typer.Option("--force", help="Switch OUT to this spec although it holds a different sweep (finished runs are kept).")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Train every run of SPEC not yet finished in OUT (one line per run, a summary at the end)."""
    from circuits.sweep import SweepSpec, run_sweep

    summary = run_sweep(SweepSpec.load(spec), out, jobs=jobs, ensemble=_ensemble(ensemble), backend=backend,  # type: ignore[arg-type]
                        address=address, gpus_per_run=gpus_per_run, force=force, progress=not quiet,
                        log=None if not quiet else typer.echo)
    typer.echo(summary.line())
    if not summary.ok:
        for run_id, reason in summary.failed.items():
            typer.echo(f"failed {run_id}: {reason}", err=True)
        typer.echo(f"error: {len(summary.failed)} of {summary.total} runs failed; rerun the command to retry them", err=True)
        raise typer.Exit(FAILED_EXIT)


@app.command("status")
@user_errors
def status(out: OutArg, as_json: JsonOption = False) -> None:
    """The runs of OUT and their state (done / running / failed / pending); changes nothing."""
    from circuits.sweep import SweepDir

    sweep = SweepDir(out)
    ident = sweep.read_identity()
    rows = sweep.rows(with_analysis=False)
    keys = ["run_id", "status", *ident["columns"], "unseen_pair", "error"]
    if as_json:
        typer.echo(json.dumps([{k: r.get(k) for k in keys} for r in rows]))
        return
    counts = {s: sum(r["status"] == s for r in rows) for s in ("done", "running", "failed", "pending")}
    _print_rows(rows, keys, title=f"{sweep.path}: " + ", ".join(f"{n} {s}" for s, n in counts.items()))


@app.command("table")
@user_errors
def table(
    out: OutArg,
    as_json: JsonOption = False,
    as_csv: Annotated[bool, typer.Option("--csv", help="Print CSV instead of a table.")] = False,
    runs: Annotated[bool, typer.Option("--runs", help="One row per run instead of mean ± std per group.")] = False,
) -> None:
    """Final accuracies: mean ± std over seeds grouped by every swept key (or --runs: one row per run)."""
    from circuits.sweep import load_results, summarize

    frame = load_results(out)
    splits = [c for c in ("single_object", "seen_pair", "unseen_pair") if c in frame.columns]
    if runs:
        cols = ["run_id", "status", *frame.attrs["swept"], "seed", *splits]
        data = frame[[c for c in cols if c in frame.columns]]
    else:
        if not (frame["status"] == "done").any():
            from circuits.sweep import SweepError

            raise SweepError(f"{out} has no finished run yet (lenscli sweep status {out})")
        grouped = summarize(frame, metrics=splits)
        grouped.columns = [f"{m}_{stat}" for m, stat in grouped.columns]
        data = grouped.reset_index(drop=not frame.attrs["swept"])
    if as_json:
        typer.echo(data.to_json(orient="records"))
    elif as_csv:
        typer.echo(data.to_csv(index=False), nl=False)
    else:
        _print_rows(data.to_dict("records"), list(data.columns), title=str(out))


@app.command("analyze")
@user_errors
def analyze(
    out: OutArg,
    ablate: Annotated[Optional[str], typer.Option("--ablate", help="Comma-separated ablations, e.g. EP,PP,BP,EP+PP+BP,VP.", show_default=False)] = None,
    bias: Annotated[bool, typer.Option("--bias", help="Vision heads' left/right bias on unseen pairs.")] = False,
    top1: Annotated[bool, typer.Option("--top1", help="What the top caption of an unseen-pair image is: correct, reversed, one object, ...")] = False,
    jobs: JobsOption = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Ablation, head-bias and top-caption columns for every finished run (cached per run; a rerun is instant)."""
    from circuits.sweep import analyze_sweep

    names = [a.strip() for a in (ablate or "").split(",") if a.strip()]
    failed = analyze_sweep(out, names, bias, top1=top1, jobs=jobs, progress=not quiet)
    typer.echo(f"results: {Path(out) / 'results.csv'}")
    if failed:
        typer.echo(f"error: the analysis of {len(failed)} runs failed", err=True)
        raise typer.Exit(FAILED_EXIT)


def _print_rows(rows: list[dict], columns: list[str], title: str) -> None:
    from rich.console import Console
    from rich.table import Table

    tab = Table(title=title)
    for c in columns:
        tab.add_column(str(c))
    for r in rows:
        tab.add_row(*(_fmt(r.get(c)) for c in columns))
    Console().print(tab)


def _fmt(v) -> str:
    if v is None or (isinstance(v, float) and v != v):
        return ""
    return f"{v:.3f}" if isinstance(v, float) else str(v)


@user_errors
def reproduce(
    name: Annotated[Optional[str], typer.Argument(help="Catalogue entry (see --list).", show_default=False)] = None,
    list_: Annotated[bool, typer.Option("--list", help="Print the catalogue and exit.")] = False,
    quick: Annotated[bool, typer.Option("--quick", help="The entry's quick profile (a smoke test).")] = False,
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Sweep directory.  [default: runs/reproduce/NAME[-quick]]", show_default=False)] = None,
    jobs: JobsOption = None,
    ensemble: Annotated[str, typer.Option("--ensemble", help="As for `sweep run`.")] = "1",
    force: Annotated[bool, typer.Option("--force", help="As for `sweep run`.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
    seeds: Annotated[Optional[int], typer.Option("--seeds", help="Train seeds 0..N-1 instead of the entry's own.", show_default=False)] = None,
    first_seed: Annotated[int, typer.Option("--first-seed", help="Seeds F..F+N-1 (e.g. to run the seeds of a script entry in parallel, then merge).")] = 0,
    device: Annotated[Optional[str], typer.Option("--device", help="Train on this device (cpu, cuda[:N]); a sweep resumes on another device.", show_default=False)] = None,
) -> None:
    """Reproduce a figure or table of the paper: its sweep, its analysis, results.json / .md and figure.html."""
    from circuits.sweep import SweepError
    from circuits.sweep.catalogue import entries, estimate_seconds
    from circuits.sweep.catalogue import reproduce as reproduce_

    if list_:
        rows = [_catalogue_row(e, estimate_seconds) for e in entries()]
        _print_rows(rows, list(rows[0]) if rows else [], title="lenscli reproduce NAME [--quick] [--out DIR]")
        return
    if name is None:
        raise SweepError("give an experiment name, or --list to see the catalogue")
    result = reproduce_(name, quick=quick, out=out, jobs=jobs, ensemble=_ensemble(ensemble), force=force, progress=not quiet,
                        seeds=seeds, first_seed=first_seed, device=device)
    where = out or Path("runs/reproduce") / (name + ("-quick" if quick else ""))
    if "summary" in result:  # a sweep entry
        typer.echo(f"{result['summary']}\n{name} ({Path(result['spec']).name}): results.json, results.md, figure.html in {where}")
    else:
        typer.echo(f"{name}: results.json, results.md in {where}")


def _catalogue_row(e, estimate_seconds) -> dict:
    from circuits.sweep.catalogue import ScriptEntry

    if isinstance(e, ScriptEntry):
        name = e.name + "".join(f" (= {a})" for a in e.aliases)
        return {"name": name, "paper": e.paper, "runs (quick / full)": f"script {e.path.name}",
                "est. training, 2 cores (quick / full)": e.time}
    return {"name": e.name, "paper": e.paper, "runs (quick / full)": f"{len(e.profile(True).expand())} / {len(e.spec.expand())}",
            "est. training, 2 cores (quick / full)": f"{estimate_seconds(e.profile(True), 2):.0f} s / {estimate_seconds(e.spec, 2) / 60:.0f} min"}
