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
