#!/usr/bin/env bash
# Third GPU command (issue 5's overhead target): the UDS scoring pass with the forward replayed from CUDA graphs
# against a plain SFT step on the kept samples (benchmarks/gpu_uds_graphs.py). Expects the GGUF parts r0..r3 in
# /root/w (four earlier calls) and .gguf/r4 + .whl carried.
source benchmarks/gpu_setup.sh
nvidia-smi --query-gpu=name,driver_version,power.limit,clocks.sm --format=csv
timeout "${BUDGET_S:-500}" python3 benchmarks/gpu_uds_graphs.py --out "$OUT/uds_graphs.json" "$@" 2>&1 | tee "$OUT/uds_graphs.log"
