"""Where the runs of a sweep train: one interface, three backends.

A *task* is a list of runs trained together: one run, or the members of a vectorised
ensemble (`circuits.train.ensemble`). `train_task` trains one task into its run directories
and returns one outcome per run; an executor only decides where tasks run:

* `InlineExecutor` - in this process, one after the other (``--jobs 1``);
* `LocalExecutor` - ``jobs`` worker processes with one torch thread each (the default);
* `RayExecutor` - Ray tasks (``num_cpus`` 1, ``num_gpus`` ``gpus_per_run``) on a local Ray or
  a cluster (``address``); results land in OUT on the shared filesystem exactly as locally.

``executor.run(tasks, on_done)`` calls ``on_done(outcomes)`` in the calling process as each
task finishes.
"""

from __future__ import annotations

import math
import os
import socket
import threading
from typing import Any, Callable, Protocol, Sequence

from circuits.errors import CircuitsError
from circuits.sweep.spec import SweepError

Task = list[dict[str, Any]]  # [{"run_id", "config": RunConfig.to_dict(), "dir"}]
Outcome = dict[str, Any]  # {"run_id", "ok", "error", "steps", "seconds"}
OnDone = Callable[[list[Outcome]], None]


class RunFailed(CircuitsError):
    """A run that cannot go on (e.g. its loss became NaN)."""


class Executor(Protocol):
    def run(self, tasks: Sequence[Task], on_done: OnDone) -> None: ...


# ------------------------------------------------------------------------------ the work
def _finite_check(row: dict) -> None:
    loss = row.get("loss")
    if loss is not None and not math.isfinite(loss):
        raise RunFailed(f"the training loss became {loss} at step {row['step']}")


def _reason(e: BaseException) -> str:
    text = getattr(e, "cli_message", None) or str(e) or type(e).__name__
    text = " ".join(text.split())
    return text if isinstance(e, CircuitsError) else f"{type(e).__name__}: {text}"


def train_task(task: Task, threads: int | None = 1) -> list[Outcome]:
    """Train every run of ``task`` into its directory; one outcome per run (never raises for a
    failed run: its reason is in the outcome)."""
    from circuits.config import RunConfig
    from circuits.runtime import set_threads

    set_threads(threads)
    if len(task) > 1:
        try:
            return _train_ensemble(task)
        except Exception:  # one member failed (e.g. NaN): train them alone, so the others survive
            pass
    return [_train_single(item["run_id"], RunConfig.from_dict(item["config"]), item["dir"]) for item in task]


def _train_single(run_id: str, cfg, run_dir: str) -> Outcome:
    from circuits.train import train_to_directory

    try:
        run = train_to_directory(cfg, run_dir, progress=False, on_eval=_finite_check)
    except Exception as e:
        return {"run_id": run_id, "ok": False, "error": _reason(e), "steps": 0, "seconds": 0.0}
    return {"run_id": run_id, "ok": True, "error": None, "steps": cfg.train.steps, "seconds": run.seconds}


def _train_ensemble(task: Task) -> list[Outcome]:
    from pathlib import Path

    from circuits.checkpoint import save
    from circuits.config import RunConfig
    from circuits.train.ensemble import train_ensemble

    cfgs = [RunConfig.from_dict(item["config"]) for item in task]
    runs = train_ensemble(cfgs, on_eval=lambda k, row: _finite_check(row))
    for item, run in zip(task, runs):
        save(run, Path(item["dir"]))
    return [{"run_id": item["run_id"], "ok": True, "error": None, "steps": cfg.train.steps, "seconds": run.seconds}
            for item, cfg, run in zip(task, cfgs, runs)]


# ------------------------------------------------------------------------------ backends
class InlineExecutor:
    """Tasks one after the other in this process."""

    def __init__(self, threads: int | None = 1):
        self.threads = threads

    def run(self, tasks: Sequence[Task], on_done: OnDone) -> None:
        for task in tasks:
            on_done(train_task(task, self.threads))


def _watch_parent(parent: int) -> None:
    """In a worker: exit at once when the sweep process is gone (e.g. killed by SIGKILL), so no
    orphan goes on writing into OUT."""
    import time

    def watch() -> None:
        while True:
            if os.getppid() != parent:
                os._exit(1)
            time.sleep(0.2)

    threading.Thread(target=watch, daemon=True).start()


def _worker_init(parent: int, threads: int | None) -> None:
    from circuits.runtime import set_threads

    set_threads(threads)
    _watch_parent(parent)


def map_processes(fn: Callable, items: Sequence[Any], jobs: int, on_done: Callable[[Any], None], threads: int | None = 1) -> None:
    """``on_done(fn(item))`` for every item, computed in ``jobs`` fresh worker processes (one
    torch thread each; they die with this process). ``jobs == 1``: in this process."""
    if jobs <= 1 or len(items) <= 1:
        for item in items:
            on_done(fn(item))
        return
    import multiprocessing
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    pool = ProcessPoolExecutor(min(jobs, len(items)), mp_context=multiprocessing.get_context("spawn"),
                               initializer=_worker_init, initargs=(os.getpid(), threads))
    try:
        pending = {pool.submit(fn, item) for item in items}
        while pending:
            finished, pending = wait(pending, return_when=FIRST_COMPLETED)
            for future in finished:
                on_done(future.result())
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


class LocalExecutor:
    """``jobs`` worker processes (default: the number of cores), one torch thread each."""

    def __init__(self, jobs: int | None = None, threads: int | None = 1):
        self.jobs = jobs or os.cpu_count() or 1
        self.threads = threads

    def run(self, tasks: Sequence[Task], on_done: OnDone) -> None:
        import functools

        map_processes(functools.partial(train_task, threads=self.threads), list(tasks), self.jobs, on_done, self.threads)


RAY_MISSING = "the ray backend needs Ray, which is not installed: pip install -e \".[ray]\" (or pip install ray)"


def check_ray(address: str | None) -> None:
    """Raise (one line) unless Ray is importable and ``address`` (if given) answers."""
    import importlib.util

    if importlib.util.find_spec("ray") is None:
        raise SweepError(RAY_MISSING)
    if address in (None, "auto", "local"):
        return
    hostport = address.split("://", 1)[-1]
    host, _, port = hostport.rpartition(":")
    if not host or not port.isdigit():
        raise SweepError(f"--address {address!r} must be HOST:PORT (e.g. 10.0.0.5:6379) or ray://HOST:PORT")
    try:
        socket.create_connection((host, int(port)), timeout=3).close()
    except OSError as e:
        raise SweepError(f"cannot reach the Ray cluster at {address}: {e.strerror or e}; "
                         "start it with `ray start --head` or check --address") from None


class RayExecutor:
    """Every task a Ray task with 1 CPU and ``gpus_per_run`` GPUs (per run of the task).

    Without ``address`` a local Ray is started (or the one already initialised is used).
    """

    def __init__(self, address: str | None = None, gpus_per_run: float = 0.0, threads: int | None = 1):
        check_ray(address)
        self.address, self.gpus_per_run, self.threads = address, gpus_per_run, threads

    def run(self, tasks: Sequence[Task], on_done: OnDone) -> None:
        import ray

        if not ray.is_initialized():
            try:
                ray.init(address=self.address, include_dashboard=False, log_to_driver=False,
                         runtime_env={"env_vars": {"PYTHONPATH": os.environ.get("PYTHONPATH", "")}})
            except (ConnectionError, RuntimeError) as e:
                raise SweepError(f"cannot start or join Ray{f' at {self.address}' if self.address else ''}: {_reason(e)}") from None
        remote = ray.remote(train_task)
        refs = {remote.options(num_cpus=1, num_gpus=self.gpus_per_run * len(t)).remote(t, self.threads): t for t in tasks}
        pending = list(refs)
        while pending:
            finished, pending = ray.wait(pending, num_returns=1)
            for ref in finished:
                try:
                    outcomes = ray.get(ref)
                except Exception as e:  # the worker died (OOM, lost node): its runs failed, the others go on
                    outcomes = [{"run_id": item["run_id"], "ok": False, "error": _reason(e), "steps": 0, "seconds": 0.0}
                                for item in refs[ref]]
                on_done(outcomes)
