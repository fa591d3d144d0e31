#!/usr/bin/env bash
# One device session: CUDA correctness and throughput of the default model (docs/sweeps.md).
# Run from the repository root on a CUDA machine with torch; writes logs under ${OUT:-gpu_out}.
# Where transformer-lens & co. are missing, put their wheels in .whl/ (benchmarks/README.md).
set -u
OUT=${OUT:-gpu_out}; mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site:$PWD
else
  export PYTHONPATH=$PWD
fi
nvidia-smi -L 2>&1 | tee "$OUT/device.txt"
python3 -c "import torch, circuits.models; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())" 2>&1 | tee -a "$OUT/device.txt" || exit 1
# 1. ensemble members equal their single twins on CUDA, and model-steps/s for K stacked models
timeout 180 python3 benchmarks/bench_ensemble.py --device cuda --check --ks 1,8,32,64,128,256 --steps 50 2>&1 | tee "$OUT/ensemble.txt"
# 2. one default model trained on CUDA: the whole recipe, time to unseen-pair 0.9
timeout 120 python3 benchmarks/bench_train.py --device cuda --paths fast --steps 1500 2>&1 | tee "$OUT/train.txt"
# 3. a real sweep with the auto executor (ensembles on a GPU): 64 seeds x 1500 steps, evaluations and checkpoints included
SPEC=$(mktemp --suffix .toml); SWEEP=$(mktemp -d)/sweep
printf 'seeds = %s\ntie_world_seed = false\n[set]\n"train.steps" = %s\n"train.eval_every" = 500\n"train.device" = "%s"\n' \
  "${SWEEP_RUNS:-64}" "${SWEEP_STEPS:-1500}" "${DEVICE:-cuda}" > "$SPEC"
start=$SECONDS
timeout 150 python3 -m lenscli.app sweep run "$SPEC" --out "$SWEEP" --ensemble auto 2>&1 | tail -5 | tee "$OUT/sweep.txt"
echo "sweep of ${SWEEP_RUNS:-64} runs x ${SWEEP_STEPS:-1500} steps: $((SECONDS - start)) s wall" | tee -a "$OUT/sweep.txt"
python3 -m lenscli.app sweep table "$SWEEP" --csv 2>&1 | tee -a "$OUT/sweep.txt"
