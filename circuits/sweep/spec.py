"""A sweep spec (TOML file or Python object) and its expansion into resolved, identified runs.

::

    seeds = [0, 1, 2]                      # or: seeds = 3  (train.seed; the data seed too, world.seed or toy2ds.train_seed, unless tie_world_seed = false)
    config = "base.json"                   # optional JSON config, relative to this file
    [set]                                  # base overrides, the dotted keys of --set
    "train.steps" = 1500
    [grid]                                 # cartesian product
    "world.n_pair_labels" = [5, 10, 15]
    [[zip]]                                # keys varied together (a group; several [[zip]] multiply)
    "model.vision.init_pos_std" = [0.1, 0.02]
    "model.vision.init_embed_std" = [0.1, 0.1]
    [analyze]                              # optional: what `sweep analyze` computes by default
    ablate = ["EP", "PP", "EP+PP+BP"]
    bias = true                            # and top1 = true: what the top caption of an unseen pair is
    [quick]                                # optional profile: replaces seeds / grid values, adds set
    seeds = 1
    [quick.set]
    "train.steps" = 300

Every combination is validated (as `RunConfig.with_overrides`) before anything runs; the
first problem is one `SweepError` line naming the spec file, the key and the value. A run's id
is a hash of its resolved config (threads and device excluded: they change speed, not the
model), so the same config always has the same id, whatever the order of the spec.
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import json
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from circuits.config import RunConfig, load_config_file
from circuits.errors import CircuitsError

SEED = "seed"  # the column / swept name of the seed
ANALYZE_KEYS = {"ablate", "bias", "top1"}  # circuits.sweep.analyze_sweep's options
TOP_KEYS = {"seeds", "tie_world_seed", "config", "set", "grid", "zip", "analyze", "quick", "experiment"}
PROFILE_KEYS = {"seeds", "set", "grid", "zip"}
ID_EXCLUDED = (("train", "threads"), ("train", "device"))
# Config fields added after sweeps were first written, left out of a run id at their default so
# that a sweep written before keeps its ids (append a field here when adding one with a default
# that keeps the old behaviour).
ID_LATER_FIELDS = {("world", "unseen_pairs"): "heldout_labels", ("model", "decoder", "caption_order"): "subject_first"}


class SweepError(CircuitsError):
    """A bad sweep spec, a sweep directory that cannot be used, or a failed sweep."""


@dataclass
class SweepRun:
    """One run of a sweep: its id, its resolved config, and its values of the swept keys."""

    run_id: str
    cfg: RunConfig
    values: dict[str, Any]  # swept key -> value, and "seed"


@dataclass
class SweepSpec:
    """The parsed spec. ``source`` names it in messages (the file, or "<spec>")."""

    seeds: list[int] = field(default_factory=lambda: [0])
    set: dict[str, Any] = field(default_factory=dict)
    grid: dict[str, list] = field(default_factory=dict)
    zip: list[dict[str, list]] = field(default_factory=list)
    config: str | None = None  # JSON config file, relative to the spec file
    tie_world_seed: bool = True
    analyze: dict[str, Any] = field(default_factory=dict)
    experiment: dict[str, Any] = field(default_factory=dict)  # catalogue metadata (circuits.sweep.catalogue)
    quick: dict[str, Any] | None = None
    source: str = "<spec>"
    text: str | None = None  # the file's text, copied to OUT/sweep.toml

    # ------------------------------------------------------------------ reading
    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "<spec>", text: str | None = None) -> SweepSpec:
        unknown = sorted(set(data) - TOP_KEYS)
        if unknown:
            raise SweepError(f"{source}: unknown spec key {unknown[0]!r}; valid keys are {', '.join(sorted(TOP_KEYS))}")
        spec = cls(source=source, text=text)
        spec.seeds = _seeds(data.get("seeds", [0]), source)
        spec.tie_world_seed = _typed(data.get("tie_world_seed", True), bool, "tie_world_seed", source)
        spec.config = _typed(data.get("config"), (str, type(None)), "config", source)
        spec.set = dict(_table(data.get("set", {}), "set", source))
        spec.grid = {k: _values(v, f"grid.{k}", source) for k, v in _table(data.get("grid", {}), "grid", source).items()}
        zips = data.get("zip", [])
        if isinstance(zips, dict):
            zips = [zips]
        if not isinstance(zips, list):
            raise SweepError(f"{source}: zip must be a table or a list of tables ([[zip]])")
        spec.zip = []
        for i, group in enumerate(zips):
            group = {k: _values(v, f"zip.{k}", source) for k, v in _table(group, f"zip[{i}]", source).items()}
            lengths = {k: len(v) for k, v in group.items()}
            if len(set(lengths.values())) > 1:
                detail = ", ".join(f"{k} has {n}" for k, n in lengths.items())
                raise SweepError(f"{source}: the keys of zip group {i} must have as many values each ({detail})")
            spec.zip.append(group)
        spec.analyze = dict(_table(data.get("analyze", {}), "analyze", source))
        bad = sorted(set(spec.analyze) - ANALYZE_KEYS)
        if bad:
            raise SweepError(f"{source}: [analyze]: unknown key {bad[0]!r} (known: {', '.join(sorted(ANALYZE_KEYS))})")
        spec.experiment = dict(_table(data.get("experiment", {}), "experiment", source))
        quick = data.get("quick")
        if quick is not None:
            quick = dict(_table(quick, "quick", source))
            bad = sorted(set(quick) - PROFILE_KEYS)
            if bad:
                raise SweepError(f"{source}: unknown key {bad[0]!r} in [quick]; valid keys are {', '.join(sorted(PROFILE_KEYS))}")
        spec.quick = quick
        swept = spec.swept_keys()
        if len(set(swept)) != len(swept):
            dup = next(k for k in swept if swept.count(k) > 1)
            raise SweepError(f"{source}: key {dup!r} is swept twice (grid and zip, or two zip groups)")
        for key in ("train.seed", "world.seed"):
            if key in swept or key in spec.set:
                if key == "train.seed" or spec.tie_world_seed:
                    raise SweepError(f"{source}: set {key} through `seeds = [...]`, not in [set]/[grid]/[[zip]]"
                                     + (" (or set tie_world_seed = false)" if key == "world.seed" else ""))
        return spec

    @classmethod
    def load(cls, path: str | Path) -> SweepSpec:
        """Read a TOML spec file (one-line `SweepError` if missing or malformed)."""
        path = Path(path)
        try:
            text = path.read_text()
        except FileNotFoundError:
            raise SweepError(f"sweep spec {path} does not exist") from None
        except IsADirectoryError:
            raise SweepError(f"sweep spec {path} is a directory, not a TOML file") from None
        except OSError as e:
            raise SweepError(f"cannot read sweep spec {path}: {e.strerror}") from None
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as e:
            raise SweepError(f"{path} is not valid TOML: {e}") from None
        spec = cls.from_dict(data, source=str(path), text=text)
        if spec.config is not None:
            spec.config = str((path.parent / spec.config).resolve())
        return spec

    # ------------------------------------------------------------------ derived
    def swept_keys(self) -> list[str]:
        """The varied config keys, in spec order (grid, then zip groups); the seed is not among them."""
        return [*self.grid, *(k for group in self.zip for k in group)]

    def columns(self) -> list[str]:
        """Swept keys and "seed": the identifying columns of the results table."""
        return [*self.swept_keys(), SEED]

    def profile(self, name: str = "quick") -> SweepSpec:
        """The spec with profile ``[name]`` applied: its seeds / grid / zip replace the base
        spec's, its set entries are added."""
        if name != "quick":
            raise SweepError(f"unknown profile {name!r}; specs have a 'quick' profile")
        if self.quick is None:
            raise SweepError(f"{self.source} has no [quick] profile")
        data = self.to_dict()
        q = self.quick
        data["seeds"] = q.get("seeds", data["seeds"])
        data["set"] = {**data["set"], **q.get("set", {})}
        data["grid"] = {**data["grid"], **q.get("grid", {})}
        if "zip" in q:
            data["zip"] = q["zip"]
        data.pop("quick", None)
        spec = SweepSpec.from_dict(data, source=f"{self.source} [quick]")
        spec.config = self.config
        return spec

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"seeds": list(self.seeds), "tie_world_seed": self.tie_world_seed,
                                "set": dict(self.set), "grid": copy.deepcopy(self.grid), "zip": copy.deepcopy(self.zip)}
        if self.config is not None:
            data["config"] = self.config
        for key in ("analyze", "experiment"):
            if getattr(self, key):
                data[key] = copy.deepcopy(getattr(self, key))
        if self.quick is not None:
            data["quick"] = copy.deepcopy(self.quick)
        return data

    def base(self) -> RunConfig:
        """The config every run starts from: ``config`` (or the defaults) with ``[set]`` applied."""
        try:
            cfg = load_config_file(self.config) if self.config is not None else RunConfig()
            return cfg.with_overrides(dict(self.set))
        except CircuitsError as e:
            raise SweepError(f"{self.source}: [set]: {e}") from None

    def expand(self) -> list[SweepRun]:
        """Every run of the sweep, resolved and validated (the first bad combination raises)."""
        base = self.base()
        axes: list[list[dict[str, Any]]] = [[{k: v} for v in values] for k, values in self.grid.items()]
        axes += [[dict(zip(group, combo)) for combo in zip(*group.values())] for group in self.zip]
        empty = [k for k, v in self.grid.items() if not v] + [k for g in self.zip for k, v in g.items() if not v]
        if empty or not self.seeds:
            raise SweepError(f"{self.source}: {(empty or ['seeds'])[0]} has no values: the sweep would be empty")
        runs, seen = [], set()
        for parts in itertools.product(*axes):
            values: dict[str, Any] = {k: v for part in parts for k, v in part.items()}
            for seed in self.seeds:
                overrides = {**values, "train.seed": seed}
                if self.tie_world_seed:  # the data seed: the world's, or the toy 2DS's training set (its test set stays)
                    overrides["toy2ds.train_seed" if values.get("task", base.task) == "toy2ds" else "world.seed"] = seed
                try:
                    cfg = base.with_overrides(overrides)
                except CircuitsError as e:
                    shown = ", ".join(f"{k}={json.dumps(v)}" for k, v in values.items()) or "the base"
                    raise SweepError(f"{self.source}: {shown}, seed {seed}: {e}") from None
                run = SweepRun(run_id(cfg), cfg, {**values, SEED: seed})
                if run.run_id not in seen:
                    seen.add(run.run_id)
                    runs.append(run)
        return runs

    def identity(self) -> dict[str, Any]:
        """What makes two specs the same sweep: the base config, the swept keys and the seed rule
        (values may be added or removed: every run keeps its id)."""
        return {"base": _id_dict(self.base()), "swept": sorted(self.swept_keys()), "tie_world_seed": self.tie_world_seed}


def run_id(cfg: RunConfig) -> str:
    """A stable 12-hex id of ``cfg`` (threads and device excluded)."""
    blob = json.dumps(_id_dict(cfg), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def _id_dict(cfg: RunConfig) -> dict[str, Any]:
    data = cfg.to_dict()
    for section, key in ID_EXCLUDED:
        data[section].pop(key, None)
    for (*path, key), default in ID_LATER_FIELDS.items():
        section = data
        for name in path:
            section = section.get(name, {})
        if section.get(key) == default:
            section.pop(key)
    return data


def _seeds(value: Any, source: str) -> list[int]:
    if isinstance(value, bool):
        raise SweepError(f"{source}: seeds must be a count or a list of integers (got {value!r})")
    if isinstance(value, int):
        if value < 1:
            raise SweepError(f"{source}: seeds = {value}: the sweep would be empty (give a count >= 1 or a list)")
        return list(range(value))
    if isinstance(value, list) and all(isinstance(s, int) and not isinstance(s, bool) for s in value):
        if not value:
            raise SweepError(f"{source}: seeds = []: the sweep would be empty")
        if len(set(value)) != len(value):
            raise SweepError(f"{source}: seeds {value} has duplicates")
        return list(value)
    raise SweepError(f"{source}: seeds must be a count or a list of integers (got {value!r})")


def _table(value: Any, name: str, source: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise SweepError(f"{source}: {name} must be a table of \"dotted.key\" = value")
    return value


def _values(value: Any, name: str, source: str) -> list:
    if not isinstance(value, list):
        raise SweepError(f"{source}: {name} must be a list of values (got {value!r})")
    if not value:
        raise SweepError(f"{source}: {name} has no values: the sweep would be empty")
    return value


def _typed(value: Any, types: Any, name: str, source: str) -> Any:
    if not isinstance(value, types):
        raise SweepError(f"{source}: {name} has the wrong type (got {value!r})")
    return value
