"""`run_sweep`: every run of a spec trained into OUT, resumably, by the chosen executor.

    from circuits.sweep import SweepSpec, run_sweep, load_results, summarize
    summary = run_sweep(SweepSpec.load("experiments/fig4a.toml"), "runs/fig4a", jobs=2)
    summarize(load_results("runs/fig4a"))          # mean / std / count over seeds

Everything is checked before anything trains: the spec (every combination), each config's
size, the backend, and OUT (a different sweep there is refused unless ``force``). Finished runs
are skipped (so a rerun after a crash or Ctrl-C resumes, and a grid with added values trains
only the new runs); failed runs are retried. A run that fails is recorded with its one-line
reason and the others go on; the returned `SweepSummary` lists the failures.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Literal

from circuits.sweep.executors import Executor, InlineExecutor, LocalExecutor, Outcome, RayExecutor, Task, check_ray
from circuits.sweep.layout import SweepDir
from circuits.sweep.spec import SweepError, SweepRun, SweepSpec

ENSEMBLE_AUTO_GPU = 128  # members per stack on a GPU (measured on an H200); on CPU processes win (docs/sweeps.md)


@dataclass
class SweepSummary:
    out: Path
    total: int
    skipped: int  # finished before this call
    trained: int = 0
    failed: dict[str, str] = field(default_factory=dict)  # run id -> reason
    seconds: float = 0.0
    model_steps: int = 0

    @property
    def ok(self) -> bool:
        return not self.failed

    def line(self) -> str:
        rate = self.model_steps / self.seconds if self.seconds > 0 else 0.0
        return (f"{self.total} runs: {self.skipped} already done, {self.trained} trained, {len(self.failed)} failed"
                f" in {self.seconds:.1f} s ({rate:.1f} model-steps/s); results: {self.out / 'results.csv'}")


def choose_ensemble(ensemble: int | Literal["auto"], device: str = "auto") -> int:
    """Members per stack: ``auto`` is 1 (processes) on CPU, `ENSEMBLE_AUTO_GPU` on a GPU."""
    if ensemble == "auto":
        from circuits.checkpoint import resolve_device

        return ENSEMBLE_AUTO_GPU if resolve_device(device).type == "cuda" else 1
    if isinstance(ensemble, bool) or not isinstance(ensemble, int) or ensemble < 1:
        raise SweepError(f"--ensemble must be a member count >= 1 or 'auto' (got {ensemble!r})")
    return ensemble


def plan_tasks(runs: list[SweepRun], sweep: SweepDir, ensemble: int) -> list[Task]:
    """The runs grouped into tasks: alone, or up to ``ensemble`` stackable runs together."""
    def item(r: SweepRun) -> dict:
        return {"run_id": r.run_id, "config": r.cfg.to_dict(), "dir": str(sweep.run_dir(r.run_id))}

    if ensemble <= 1:
        return [[item(r)] for r in runs]
    from circuits.train.ensemble import ensemble_key

    groups: dict[object, list[SweepRun]] = {}
    for i, r in enumerate(runs):
        key = ensemble_key(r.cfg)
        groups.setdefault(key if key is not None else ("alone", i), []).append(r)
    return [[item(r) for r in group[i:i + ensemble]] for group in groups.values() for i in range(0, len(group), ensemble)]


def make_executor(backend: str, jobs: int | None, address: str | None, gpus_per_run: float, n_tasks: int) -> Executor:
    if backend == "ray":
        return RayExecutor(address, gpus_per_run)
    if backend != "local":
        raise SweepError(f"unknown backend {backend!r}; use 'local' or 'ray'")
    jobs = jobs or os.cpu_count() or 1
    return InlineExecutor() if jobs == 1 or n_tasks <= 1 else LocalExecutor(jobs)


def run_sweep(
    spec: SweepSpec,
    out: str | os.PathLike[str],
    *,
    jobs: int | None = None,
    ensemble: int | Literal["auto"] = 1,
    backend: Literal["local", "ray"] = "local",
    address: str | None = None,
    gpus_per_run: float = 0.0,
    force: bool = False,
    progress: bool = True,
    log: Callable[[str], None] | None = None,
) -> SweepSummary:
    """Train every run of ``spec`` not yet finished in ``out``; see the module docstring."""
    from circuits.runtime import preflight

    runs = spec.expand()
    for r in runs:
        try:
            preflight(r.cfg)
        except Exception as e:
            raise SweepError(f"{spec.source}: run {r.run_id} ({_values(r)}): {e}") from None
    if jobs is not None and jobs < 1:
        raise SweepError(f"--jobs must be >= 1 (got {jobs})")
    if not 0 <= gpus_per_run <= 1:
        raise SweepError(f"--gpus-per-run must be between 0 and 1 (got {gpus_per_run})")
    if backend == "ray":
        check_ray(address)
    elif address is not None:
        raise SweepError("--address is for --backend ray")
    members = choose_ensemble(ensemble, runs[0].cfg.train.device)

    sweep = SweepDir(out)
    sweep.prepare(spec, runs, force)
    todo = [r for r in runs if not sweep.is_done(r.run_id)]
    summary = SweepSummary(sweep.path, total=len(runs), skipped=len(runs) - len(todo))
    tasks = plan_tasks(todo, sweep, members)
    executor = make_executor(backend, jobs, address, gpus_per_run, len(tasks))
    by_id = {r.run_id: r for r in runs}

    from tqdm.auto import tqdm

    bar = tqdm(total=len(runs), initial=summary.skipped, desc="sweep", unit="run", disable=not progress, dynamic_ncols=True)
    say = log or (bar.write if progress else (lambda line: None))
    start = time.perf_counter()

    def on_done(outcomes: list[Outcome]) -> None:
        for o in outcomes:
            run = by_id[o["run_id"]]
            if o["ok"]:
                sweep.clear_failure(o["run_id"])
                summary.trained += 1
                summary.model_steps += o["steps"]
                say(f"done   {o['run_id']} {_values(run)}: " + _headline(sweep.run_dir(o["run_id"])) + f" ({o['seconds']:.1f} s)")
            else:
                sweep.record_failure(o["run_id"], o["error"])
                summary.failed[o["run_id"]] = o["error"]
                say(f"FAILED {o['run_id']} {_values(run)}: {o['error']}")
            bar.update(1)
        elapsed = time.perf_counter() - start
        bar.set_postfix(failed=len(summary.failed), msteps_s=f"{summary.model_steps / max(elapsed, 1e-9):.1f}")
        sweep.write_results()

    try:
        executor.run(tasks, on_done)
    finally:
        bar.close()
        summary.seconds = time.perf_counter() - start
        sweep.write_results()
    return summary


def _values(run: SweepRun) -> str:
    return " ".join(f"{k}={v}" for k, v in run.values.items())


def _headline(run_dir: Path) -> str:
    from circuits.sweep.layout import final_metrics

    m = final_metrics(run_dir)
    return ", ".join(f"{k} {m[k]:.3f}" for k in ("single_object", "seen_pair", "unseen_pair") if k in m)
