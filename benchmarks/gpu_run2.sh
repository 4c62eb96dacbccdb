#!/usr/bin/env bash
# Second GPU command (after gpu_run.sh): the torch.compile versions (LLaDA-8B-shaped step, bundled batched), the UDS
# section again (its first run stopped at a tokenizer without a pad id), and the grid's block-64 cells.
export BUDGET_S=${BUDGET_S:-450}
source benchmarks/gpu_setup.sh
run 150 python3 benchmarks/gpu_llada8b.py --compile --out "$OUT/llada8b_compiled.json"
run 100 python3 benchmarks/gpu_uds.py --out "$OUT/uds.json"
run 110 python3 benchmarks/gpu_bundled.py --compile --out "$OUT/compile.json"
run 120 python3 benchmarks/gpu_grid.py --out-dir "$OUT" --budget-s 110 --pairs 256x64,64x64,128x64 --no-sweep
echo "done in $(( $(date +%s) - start )) s"
