#!/usr/bin/env bash
# All GPU measurements of docs/GPU_NOTES.md and docs/BENCHMARKS.md in one command on the device machine (<= 10 min).
# Expects: the GGUF parts r0..r3 in /root/w (earlier calls) and .gguf/r4 + .whl carried; $OUT; BENCH_COMMIT.
# Each section runs in its own process with its own time limit, so one failure or hang costs only that section.
set -u
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
start=$(date +%s)
left() { echo $(( ${BUDGET_S:-560} - ($(date +%s) - start) )); }
cat /root/w/r0 /root/w/r1 /root/w/r2 /root/w/r3 .gguf/r4 > /root/w/smollm2.gguf
echo "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53  /root/w/smollm2.gguf" | sha256sum -c - || exit 3
export SMOLLM2_GGUF=/root/w/smollm2.gguf
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 4
export PYTHONPATH=/tmp/site
nvidia-smi --query-gpu=name,memory.total,clocks.sm,clocks.mem,power.limit --format=csv
python3 -c "import torch, transformers; print(torch.__version__, transformers.__version__, torch.cuda.get_device_name())"
run() {  # run SECONDS CMD...: at most SECONDS, never past the budget
  local limit=$1; shift
  local cap; cap=$(left); [ "$cap" -lt "$limit" ] && limit=$cap
  [ "$limit" -lt 15 ] && { echo "skipped (no time): $*"; return; }
  echo "== $* (limit ${limit}s, $(left)s left)"
  timeout "$limit" "$@" || echo "exit $? from: $*"
}
run 110 python3 benchmarks/gpu_llada8b.py --out "$OUT/llada8b.json"
run 110 python3 benchmarks/gpu_bundled.py --out "$OUT/bundled.json"
run 200 python3 benchmarks/gpu_grid.py --out-dir "$OUT" --budget-s 170
run 90 python3 benchmarks/gpu_uds.py --out "$OUT/uds.json"
run 120 python3 benchmarks/gpu_bundled.py --compile --out "$OUT/compile.json"
echo "done in $(( $(date +%s) - start )) s"
