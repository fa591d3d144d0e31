"""Process-wide runtime settings: the number of CPU threads torch may use, the device.

One place for every thread setting: the CLI (``--threads``), `circuits.train` (``train.threads``)
and worker processes (``experiments/``, ``benchmarks/``) all call `set_threads`. The default is
one thread: on a busy machine torch's default (one thread per core) collapses, 5-10x slower
than one thread, while on an idle 2-core machine two threads gain little
(``benchmarks/bench_threads.py``, numbers in ``benchmarks/README.md``).

torch is imported only inside the functions, so importing this module is instant.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

from circuits.errors import ConfigError

DEFAULT_THREADS = 1

# read by OpenMP / MKL / OpenBLAS when a child process starts its own torch
_THREAD_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def check_threads(n: int | None) -> None:
    """Raise `ConfigError` unless `n` is None (keep torch's setting) or a thread count >= 1."""
    if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 1):
        raise ConfigError(f"threads must be an integer >= 1 (got {n!r})")


def set_threads(n: int | None = DEFAULT_THREADS) -> int:
    """Let torch use `n` CPU threads in this process (and child processes it starts); return
    the previous count. ``None`` leaves the current setting alone."""
    import torch

    check_threads(n)
    previous = torch.get_num_threads()
    if n is not None:
        torch.set_num_threads(n)
        for name in _THREAD_ENV:
            os.environ[name] = str(n)
    return previous


@contextmanager
def threads(n: int | None) -> Iterator[None]:
    """`set_threads(n)` for the duration of the block, then the previous count again."""
    import torch

    previous = set_threads(n)
    try:
        yield
    finally:
        if n is not None and torch.get_num_threads() != previous:
            torch.set_num_threads(previous)


def check_device(name: str) -> None:
    """Raise `ConfigError` (one line) if device `name` ("cpu", "cuda[:N]", "mps", "auto") is not
    usable on this machine. Imports torch."""
    import torch

    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError(f"train.device={name!r} but CUDA is not available on this machine; use 'cpu' or 'auto'")
        index = name.partition(":")[2]
        if index and (not index.isdigit() or int(index) >= torch.cuda.device_count()):
            raise ConfigError(f"train.device={name!r} but this machine has {torch.cuda.device_count()} CUDA device(s)")
    elif name == "mps" and not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
        raise ConfigError("train.device='mps' but MPS is not available on this machine; use 'cpu' or 'auto'")


def available_memory() -> int | None:
    """Bytes of memory available to a new allocation (Linux: MemAvailable), or None if unknown."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def preflight(cfg):
    """Everything that can be checked about a training run of `cfg` before any work starts:
    its threads, its device, its size against the memory of this machine, its step count.
    Raises `ConfigError` (one line); returns the `ResourceEstimate`. Imports torch (for the
    device) only if the size is fine."""
    from circuits.config import check_resources

    check_threads(cfg.train.threads)
    estimate = check_resources(cfg, available_memory())
    if cfg.train.device != "auto" and cfg.train.device != "cpu":
        check_device(cfg.train.device)
    return estimate


def training_entry(fn):
    """Decorator for a function ``fn(cfg, ...)`` that trains: `preflight` the config, then run
    with ``cfg.train.threads`` torch threads (the previous count restored afterwards)."""
    import functools

    @functools.wraps(fn)
    def wrapper(cfg, *args, **kwargs):
        preflight(cfg)
        with threads(cfg.train.threads):
            return fn(cfg, *args, **kwargs)

    return wrapper


def run_script(main, argv: list[str] | None = None) -> int:
    """Run a script's ``main(argv)`` as `lenscli` runs a command: a `CircuitsError` becomes one
    ``error: ...`` line on stderr and exit code 2 (for ``experiments/`` and ``benchmarks/``)."""
    import sys

    from circuits.errors import CircuitsError

    try:
        return main(argv) or 0
    except CircuitsError as e:
        print(f"error: {' '.join(e.cli_message.split())}", file=sys.stderr)
        return 2
