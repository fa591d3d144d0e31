"""How far this tree's training trajectory is from another revision's, trained side by side.

Both trees train the same configs from the same seed in one process (the revision's ``circuits``
exported as ``circuits_base``, as in ``bench_ab.py``), one thread; prints the largest |weight
difference| after 1, 10, 50 and 200 steps (b_K aside: its true gradient is zero, so AdamW steps
on rounding noise and it cannot change any output) and the largest |loss difference| over the
first 50 steps. A change that computes the same function rounds differently; this is how much.

    python benchmarks/trajectory_diff.py                 # against HEAD
    python benchmarks/trajectory_diff.py --base 8335c27
"""

from __future__ import annotations

import argparse
import importlib
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from bench_ab import export_base  # noqa: E402

CHECK = (1, 10, 50, 200)
CONFIGS = {
    "default": {},
    "2-layer": {"model.vision.n_layers": 2, "model.text.n_layers": 2},
    "LayerNorm + MLP": {"model.vision.normalization": "pre", "model.vision.attn_only": False},
    "rotary": {"model.vision.positional": "rotary", "model.text.positional": "rotary"},
}


def trainer(pkg: str, overrides: dict):
    """(model, one-step closure returning the loss) of package ``pkg`` on ``overrides``."""
    mod = {name: importlib.import_module(f"{pkg}.{name}") for name in ("config", "checkpoint", "tasks", "train.loop", "train.objective")}
    cfg = mod["config"].RunConfig().with_overrides(overrides)
    world = mod["tasks"].build_task(cfg)
    torch.manual_seed(0)
    model = mod["checkpoint"].new_model(cfg, world)
    loop = mod["train.loop"]
    objective, data, _ = loop.training_setup(cfg, world, torch.device("cpu"))
    optimizer = loop.make_optimizer(model, cfg.train)
    loss_fn = mod["train.objective"].loss_function(objective)
    return model, lambda: float(loop.optimizer_step(model, loss_fn, data, optimizer).detach())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base", default="HEAD", help="git revision to compare against (default HEAD)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    tmp = Path(tempfile.mkdtemp())
    export_base(args.base, tmp)
    sys.path.insert(0, str(tmp))
    print(f"base {args.base}; max |weight difference| (b_K aside) after N steps")
    print(f"{'config':18s} " + "  ".join(f"{n:>7d}" for n in CHECK) + "   max |loss diff| to step 50")
    for name, overrides in CONFIGS.items():
        (model_a, step_a), (model_b, step_b) = trainer("circuits_base", overrides), trainer("circuits", overrides)
        row, loss_diff = [], 0.0
        for step in range(1, CHECK[-1] + 1):
            la, lb = step_a(), step_b()
            if step <= 50:
                loss_diff = max(loss_diff, abs(la - lb))
            if step in CHECK:
                a, b = dict(model_a.named_parameters()), dict(model_b.named_parameters())
                row.append(max(float((a[k] - b[k]).detach().abs().max()) for k in a if not k.endswith("b_K")))
        print(f"{name:18s} " + "  ".join(f"{x:7.1e}" for x in row) + f"   {loss_diff:.1e}")


if __name__ == "__main__":
    main()
