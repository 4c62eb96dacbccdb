# Sourced by every command run on the lent GPU machine (benchmarks/gpu_run*.sh, engine/bundled/gpu_compare.sh), from
# the repository root. Expects the GGUF parts r0..r3 in /root/w (four earlier calls) and .gguf/r4 + .whl carried.
# Joins and checks the GGUF, installs the wheels the image lacks, and defines `run SECONDS CMD...`, which runs CMD for
# at most SECONDS and never past BUDGET_S seconds (default 560) counted from here.
set -u
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
start=$(date +%s)
cat /root/w/r0 /root/w/r1 /root/w/r2 /root/w/r3 .gguf/r4 > /root/w/smollm2.gguf
echo "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53  /root/w/smollm2.gguf" | sha256sum -c - || exit 3
export SMOLLM2_GGUF=/root/w/smollm2.gguf
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 4
export PYTHONPATH=/tmp/site
left() { echo $(( ${BUDGET_S:-560} - ($(date +%s) - start) )); }
run() {  # run SECONDS CMD...: at most SECONDS, never past the budget
  local limit=$1; shift
  local cap; cap=$(left); [ "$cap" -lt "$limit" ] && limit=$cap
  [ "$limit" -lt 15 ] && { echo "skipped (no time): $*"; return; }
  echo "== $* (limit ${limit}s, $(left)s left)"
  timeout "$limit" "$@" || echo "exit $? from: $*"
}
