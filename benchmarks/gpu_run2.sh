#!/usr/bin/env bash
# Second GPU command (after gpu_run.sh): the torch.compile versions (LLaDA-8B-shaped step, bundled batched), the UDS
# section again (its first run stopped at a tokenizer without a pad id), and the grid's block-64 cells.
set -u
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
start=$(date +%s)
left() { echo $(( ${BUDGET_S:-450} - ($(date +%s) - start) )); }
cat /root/w/r0 /root/w/r1 /root/w/r2 /root/w/r3 .gguf/r4 > /root/w/smollm2.gguf
echo "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53  /root/w/smollm2.gguf" | sha256sum -c - || exit 3
export SMOLLM2_GGUF=/root/w/smollm2.gguf
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 4
export PYTHONPATH=/tmp/site
run() {
  local limit=$1; shift
  local cap; cap=$(left); [ "$cap" -lt "$limit" ] && limit=$cap
  [ "$limit" -lt 15 ] && { echo "skipped (no time): $*"; return; }
  echo "== $* (limit ${limit}s, $(left)s left)"
  timeout "$limit" "$@" || echo "exit $? from: $*"
}
run 150 python3 benchmarks/gpu_llada8b.py --compile --out "$OUT/llada8b_compiled.json"
run 100 python3 benchmarks/gpu_uds.py --out "$OUT/uds.json"
run 110 python3 benchmarks/gpu_bundled.py --compile --out "$OUT/compile.json"
run 120 python3 benchmarks/gpu_grid.py --out-dir "$OUT" --budget-s 110 --pairs 256x64,64x64,128x64 --no-sweep
echo "done in $(( $(date +%s) - start )) s"
