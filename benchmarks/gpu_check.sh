#!/usr/bin/env bash
# One prepared GPU session: the fast-path equivalence tests on CUDA (compiled and eager
# periphery), then the overhead benchmark at batch 128 and 512. Writes to ${OUT:-.}.
set -u
OUT=${OUT:-.}
PY=${PY:-python}
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
$PY -c "import torch, aihwkit, triton; print('torch', torch.__version__, 'aihwkit', aihwkit.__version__, 'triton', triton.__version__, 'cuda', torch.cuda.is_available())"
for backend in compile eager; do
  echo "== tests/test_fast_analog.py on cuda, periphery=$backend"
  LIGHTNING_NAS_TEST_DEVICE=cuda LIGHTNING_NAS_PERIPHERY=$backend timeout 240 $PY -m pytest -q -x -p no:cacheprovider \
    tests/test_fast_analog.py 2>&1 | tail -5
done
echo "== benchmark"
timeout 400 $PY benchmarks/hwa_overhead.py --device cuda --batch-sizes 128 512 --warmup 5 --iters 20 \
  --paths digital aihwkit fast fast-eager --json "$OUT/hwa_overhead_cuda.json" 2>&1 | grep -v Warning
echo "== campaign cost per architecture on this GPU (configs/<task>/campaign.yaml budgets)"
timeout 300 $PY benchmarks/campaign_cost.py --device cuda --archs 3 --steps 5 2>&1 | grep -v Warning
echo "== a CIFAR-shaped mini campaign with GPU workers (synthetic official-format data), then one retrain"
TMP=$(mktemp -d)
$PY -c "import sys; sys.path.insert(0, 'tests'); import formats, pathlib; formats.write_cifar10(pathlib.Path('$TMP'), per_class=100)"
timeout 300 $PY -m lightning_nas build-dataset --config configs/cifar10/campaign.yaml --data.init_args.data_dir "$TMP" \
  --sampling.n 8 --budget.epochs 2 --budget.n_reps 3 --budget.drift_samples 200 \
  --store "$TMP/rows.sqlite" --campaign_dir null --export "$OUT/gpu_campaign.csv" --accelerator gpu 2>&1 | tail -3
timeout 200 $PY -m lightning_nas retrain --config configs/cifar10/retrain.yaml \
  --top_k 0 --baseline resnet20 --out_dir "$TMP/retrain" \
  --fit_args "[\"--data.init_args.data_dir\", \"$TMP\", \"--trainer.max_epochs\", \"3\", \"--trainer.accelerator\", \"gpu\"]" 2>&1 | tail -4
