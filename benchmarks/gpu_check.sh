#!/usr/bin/env bash
# One prepared GPU session (about 8 minutes on an H200, at most 15 by its timeouts): the fast-path tests on CUDA (compiled and
# eager periphery), the overhead benchmark of every path at batch 128 and 512 (the whole-model
# compiled and CUDA-graph paths included, with their compilation times), the campaign cost per
# architecture, and a CIFAR-shaped campaign with 1, 2 and 4 workers per GPU. Writes to ${OUT:-.}.
# The device machines have Python 3.12 and torch 2.11 but no aihwkit, jsonargparse, xgboost, optuna,
# pymoo or lightgbm: install the carried wheels first (benchmarks/README.md, "gpu_check.sh").
#
# Parts (default: all, in this order; each bounded by its timeouts): tests (<= 300 s), overhead
# (op_count + hwa_overhead, <= 300 s), campaign (campaign_cost + throughput, <= 320 s). A device call
# is limited to 600 s: run e.g. `bash benchmarks/gpu_check.sh tests overhead`, then `... campaign`.
set -u
OUT=${OUT:-.}
PY=${PY:-python}
PARTS=${*:-tests overhead campaign}
for part in $PARTS; do
  case $part in tests|overhead|campaign) ;; *) echo "error: unknown part '$part' (tests, overhead or campaign)" >&2; exit 2 ;; esac
done
wants() { [[ " $PARTS " == *" $1 "* ]]; }
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | tee "$OUT/gpu.txt"
$PY -c "import torch, aihwkit, triton; print('torch', torch.__version__, 'aihwkit', aihwkit.__version__, 'triton', triton.__version__, 'cuda', torch.cuda.is_available())"
wants tests && for backend in compile eager; do
  echo "== the gpu tests (fast path vs aihwkit, physics) on cpu and cuda, periphery=$backend"
  LIGHTNING_NAS_PERIPHERY=$backend timeout 150 $PY -m pytest -q -p no:cacheprovider -m gpu \
    tests/test_fast_analog.py tests/test_physics.py 2>&1 | tail -6
done
if wants overhead; then
echo "== host syncs and ATen ops per step on cuda (eager modes; 0 syncs expected for fast-eager)"
timeout 60 $PY benchmarks/op_count.py --device cuda --archs resnet32 --modes digital fast-eager --batch-size 128 \
  --json "$OUT/op_count_cuda.json" 2>&1 | grep -v Warning
echo "== overhead per step, ResNet-32 (CIFAR shape); first-call seconds include compilation"
timeout 240 $PY benchmarks/hwa_overhead.py --device cuda --batch-sizes 128 512 --warmup 5 --iters 20 \
  --paths digital digital-compiled fast fast-eager fast-compiled fast-cudagraphs \
  --json "$OUT/hwa_overhead_cuda.json" 2>&1 | grep -v Warning
fi
if wants campaign; then
echo "== campaign cost per architecture on this GPU (configs/<task>/campaign.yaml budgets)"
timeout 120 $PY benchmarks/campaign_cost.py --device cuda --archs 3 --steps 5 2>&1 | grep -v Warning
echo "== campaign throughput with 1, 2 and 4 workers per GPU (CIFAR-10 recipe, synthetic data, 40 s each)"
timeout 200 $PY benchmarks/campaign_throughput.py --workers-per-gpu 1 2 4 --seconds 40 \
  --per-class 1000 --epochs 2 --n-reps 3 --drift-samples 1000 2>&1 | grep -v Warning | tee "$OUT/campaign_throughput_gpu.txt"
fi
