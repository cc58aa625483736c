#!/usr/bin/env bash
# On a lent GPU, in one go (at most 9.5 minutes: the parts' limits add to 570 s): the CUDA tests,
# then the audit benchmark at the 1.5B Llama shape (full-parameter and LoRA revive beside the plain
# loops, probe, compare, prune, bf16 eval) and at the 8B shape (compare, LoRA revive, the plain
# peft loop). Every figure goes to a file under $OUT (default out/gpu); each part has its own time
# limit, so one that hangs or fails leaves the others' figures. TRAIN=1 adds the trainer against
# the plain loop at the paper preset (60 s more).
# Uses the machine's own torch/transformers/peft (PYTHONPATH=., nothing installed).
# Dry run on a CPU: DEVICE=cpu BIG=135m MID=135m TRAIN_PRESET=smoke bash benchmarks/gpu_check.sh
set -u
cd "$(dirname "$0")/.."
OUT=${OUT:-out/gpu}
DEVICE=${DEVICE:-cuda}
BIG=${BIG:-8b}
MID=${MID:-1.5b}
TRAIN_PRESET=${TRAIN_PRESET:-paper}
PY=${PY:-python3}
mkdir -p "$OUT"
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
export WRAPCLI_TEST_DEVICE=$DEVICE PYTHONWARNINGS=ignore
part() {  # part NAME SECONDS COMMAND...: run with a limit, log to $OUT/NAME.txt, say how it ended
    local name=$1 limit=$2; shift 2
    local t0=$SECONDS
    timeout "$limit" "$@" > "$OUT/$name.txt" 2>&1
    echo "$name: exit $? in $((SECONDS - t0)) s" | tee -a "$OUT/parts.txt"
}
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>/dev/null || echo "no nvidia-smi"
  $PY -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__)"
  $PY -c "import peft; print('peft', peft.__version__)" 2>&1 | tail -1; nproc; } > "$OUT/machine.txt" 2>&1
part tests 70 $PY -m pytest -q -p no:cacheprovider -m cuda tests/acceptance/test_cuda.py
part audit-$MID 200 $PY benchmarks/bench_audit.py --size "$MID" --device "$DEVICE" --seeds 1 --steps 10 --timeout 60 \
    --rows revive-full,plain-full,revive-lora,plain-lora,eval-bf16,compare,prune,probe
part audit-$BIG 300 $PY benchmarks/bench_audit.py --size "$BIG" --device "$DEVICE" --seeds 1 --steps 10 \
    --rows revive-lora,plain-lora,compare --timeout 170  # compare was measured (2026-12-04): LoRA first
if [ "${TRAIN:-0}" = 1 ]; then
part train 60 $PY benchmarks/bench_train.py --preset "$TRAIN_PRESET" --device "$DEVICE" --steps 30 --warmup 5 \
    --repeats 1 --rows "plain,trainer,trainer --precision fp32,plain + bf16 autocast,plain + fused AdamW"
fi
cat "$OUT/parts.txt"
