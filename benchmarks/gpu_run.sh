#!/usr/bin/env bash
# All GPU measurements of docs/GPU_NOTES.md and docs/BENCHMARKS.md in one command on the device machine (<= 10 min).
# Expects: the GGUF parts r0..r3 in /root/w (earlier calls) and .gguf/r4 + .whl carried; $OUT; BENCH_COMMIT.
# Each section runs in its own process with its own time limit, so one failure or hang costs only that section.
source benchmarks/gpu_setup.sh
nvidia-smi --query-gpu=name,memory.total,clocks.sm,clocks.mem,power.limit --format=csv
python3 -c "import torch, transformers; print(torch.__version__, transformers.__version__, torch.cuda.get_device_name())"
run 110 python3 benchmarks/gpu_llada8b.py --out "$OUT/llada8b.json"
run 110 python3 benchmarks/gpu_bundled.py --out "$OUT/bundled.json"
run 200 python3 benchmarks/gpu_grid.py --out-dir "$OUT" --budget-s 170
run 90 python3 benchmarks/gpu_uds.py --out "$OUT/uds.json"
run 120 python3 benchmarks/gpu_bundled.py --compile --out "$OUT/compile.json"
echo "done in $(( $(date +%s) - start )) s"
