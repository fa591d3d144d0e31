"""Populations of models: a sweep spec, its runs trained resumably into one directory, one table.

::

    from circuits.sweep import SweepSpec, run_sweep, load_results, summarize
    spec = SweepSpec.load("experiments/fig4a.toml")       # or SweepSpec(seeds=[0, 1], grid={...})
    run_sweep(spec, "runs/fig4a", jobs=2)                 # local processes; ensemble=K, backend="ray"
    frame = load_results("runs/fig4a")                    # pandas, one row per run
    summarize(frame)                                      # mean / std / count over seeds
    analyze_sweep("runs/fig4a", ablate=["EP", "EP+PP+BP"], bias=True)   # adds columns, cached

Modules: `spec` (format, expansion, run ids), `layout` (OUT on disk, `load_results`),
`executors` (inline / local processes / Ray), `run` (`run_sweep`), `analyze`, `figures`,
`report` (HTML page), `catalogue` (``lenscli reproduce``). Format and executors: docs/sweeps.md.
"""

from circuits.sweep.analyze import analyze_sweep, parse_ablation
from circuits.sweep.layout import SweepDir, load_results, summarize
from circuits.sweep.run import SweepSummary, choose_ensemble, run_sweep
from circuits.sweep.spec import SweepError, SweepRun, SweepSpec, run_id

__all__ = [
    "SweepDir", "SweepError", "SweepRun", "SweepSpec", "SweepSummary", "analyze_sweep", "choose_ensemble",
    "load_results", "parse_ablation", "run_id", "run_sweep", "summarize",
]
