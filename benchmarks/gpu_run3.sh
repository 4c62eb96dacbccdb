#!/usr/bin/env bash
# Third GPU command (issue 5's overhead target): the UDS scoring pass with the forward replayed from CUDA graphs
# against a plain SFT step on the kept samples (benchmarks/gpu_uds_graphs.py). Expects the GGUF parts r0..r3 in
# /root/w (four earlier calls) and .gguf/r4 + .whl carried.
set -u
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
cat /root/w/r0 /root/w/r1 /root/w/r2 /root/w/r3 .gguf/r4 > /root/w/smollm2.gguf
echo "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53  /root/w/smollm2.gguf" | sha256sum -c - || exit 3
export SMOLLM2_GGUF=/root/w/smollm2.gguf
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 4
export PYTHONPATH=/tmp/site
nvidia-smi --query-gpu=name,driver_version,power.limit,clocks.sm --format=csv
timeout "${BUDGET_S:-500}" python3 benchmarks/gpu_uds_graphs.py --out "$OUT/uds_graphs.json" "$@" 2>&1 | tee "$OUT/uds_graphs.log"
