#!/usr/bin/env bash
# LoRA vs a compressed full fine-tune on the same examples and schedule, side by side on the device machine
# (docs/bundled-recipe.md).
# Expects the GGUF parts r0..r3 in /root/w (earlier calls) and .gguf/r4 + .whl carried. Starts the work detached
# (setsid), so it outlives this call; poll with `tail /root/w/cmp/*.log`. TRAIN_S: a time budget for each arm instead.
source benchmarks/gpu_setup.sh  # joins and checks the GGUF into /root/w, installs the wheels
W=/root/w
C=$W/cmp
TRAIN_S=${TRAIN_S:-}  # empty: the config default (a fixed schedule of max_steps)
mkdir -p "$C"
rm -rf $W/repo && cp -a . $W/repo  # the next call replaces this tree; the job runs from a copy
nvidia-smi --query-gpu=name,memory.total --format=csv
cat > $C/job.sh <<JOB
cd $W/repo
export PYTHONPATH=/tmp/site:$W/repo SMOLLM2_GGUF=$W/smollm2.gguf PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 \
       TOKENIZERS_PARALLELISM=false
date +%s > $C/started
python3 -m engine.bundled.cli_train --out $C/data --pool-cache $C/pool.json --data-only > $C/data.log 2>&1 || exit 1
python3 -m engine.bundled.cli_train --out $C/lora --pool-cache $C/pool.json ${TRAIN_S:+--train-seconds $TRAIN_S} \
    > $C/lora.log 2>&1 &
python3 -m engine.bundled.cli_train --out $C/full --pool-cache $C/pool.json ${TRAIN_S:+--train-seconds $TRAIN_S} \
    --method full --no-teacher-eval > $C/full.log 2>&1 &
wait
date +%s > $C/finished
JOB
setsid nohup bash $C/job.sh > $C/job.log 2>&1 < /dev/null &
sleep 5
echo "started; $(ls $C)"
