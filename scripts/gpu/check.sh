#!/usr/bin/env bash
# The GPU check: one command, about 8 minutes on one GPU, no cargo needed.
#
#   scripts/gpu/build.sh             # on a build machine: target/gpu/worker (CUDA, stripped)
#   scripts/gpu/check.sh             # on the GPU machine, from the repository root
#   scripts/gpu/check.sh --cpu       # the same pipeline on the CPU with a small proxy (a dry run)
#
# 1. nvidia-smi, and whether libnvrtc loads (CUDA kernels are compiled at run time by NVRTC).
# 2. Parity: the tiny model trained and evaluated on the CPU, on CUDA in f32 and on CUDA with the
#    bf16 base; eval loss and per-step train losses compared with the CPU figures.
# 3. A randomly initialised model with Qwen2.5-1.5B's exact shapes (bf16), generated here.
# 4. `worker bench --synthetic` on it: train tokens/s and memory at batch 2 × {1024, 2048, 4096},
#    eval rows/s; device memory also sampled with nvidia-smi.
# 5. The same workload in PyTorch + PEFT (bf16, sdpa attention): scripts/gpu/peft_bench.py.
# 6. $OUT/summary.json and $OUT/summary.md: the figures and their ratios to PEFT.
#
# Environment: WORKER (default target/gpu/worker), OUT (default $OUT or gpu-check),
# SEQS (default 1024,2048,4096), STEPS (default 3).
set -uo pipefail
cd "$(dirname "$0")/../.."
mode=gpu
[ "${1:-}" = "--cpu" ] && mode=cpu
WORKER="${WORKER:-target/gpu/worker}"
OUT="${OUT:-gpu-check}"
mkdir -p "$OUT"
work=$(mktemp -d)
trap 'rm -rf "$work"; [ -n "${sampler:-}" ] && kill "$sampler" 2>/dev/null' EXIT
started=$(date +%s)
say() { echo "[check +$(( $(date +%s) - started ))s] $*" | tee -a "$OUT/log.txt"; }

if [ "$mode" = gpu ]; then
  DEVICE=cuda; SHAPE=qwen2.5-1.5b; SEQS="${SEQS:-1024,2048,4096}"; STEPS="${STEPS:-3}"
  EVAL_SHAPE=64x1024; PEFT_DEVICE=cuda; PEFT_DTYPE=bf16
else
  DEVICE=cpu; SHAPE=proxy:96; SEQS="${SEQS:-64,128}"; STEPS="${STEPS:-1}"
  EVAL_SHAPE=8x64; PEFT_DEVICE=cpu; PEFT_DTYPE=f32
fi

say "1. device"
if [ "$mode" = gpu ]; then
  nvidia-smi | tee "$OUT/nvidia-smi.txt"
  nvrtc=$(python3 - <<'PY'
import ctypes, glob, os, site
for name in ["libnvrtc.so", "libnvrtc.so.13", "libnvrtc.so.12"]:
    try:
        ctypes.CDLL(name); print("system " + name); raise SystemExit
    except OSError:
        pass
for base in site.getsitepackages():
    for lib in glob.glob(os.path.join(base, "nvidia", "**", "libnvrtc.so*"), recursive=True):
        print("wheel " + os.path.dirname(lib)); raise SystemExit
print("missing")
PY
)
  say "libnvrtc: $nvrtc"
  case "$nvrtc" in
    wheel*) export LD_LIBRARY_PATH="${nvrtc#wheel }:${LD_LIBRARY_PATH:-}" ;;
    missing) say "libnvrtc not found: CUDA kernels cannot be compiled" ;;
  esac
fi
"$WORKER" --version | tee -a "$OUT/log.txt"

say "2. parity on the tiny model"
"$WORKER" tiny-model --out "$work/tiny" 2>>"$OUT/log.txt"
cat > "$work/parity.toml" <<'TOML'
[training]
epochs = 1
micro_batch = 2
grad_accum = 2
max_seq_len = 256
lr = 2e-3
lora_rank = 8
lora_alpha = 16.0
lora_dropout = 0.1
max_rows = 24
TOML
head -n 64 eval_data/data.jsonl > "$work/eval.jsonl"
runs="cpu:f32"
[ "$mode" = gpu ] && runs="cpu:f32 cuda:f32 cuda:bf16" || runs="cpu:f32 cpu:bf16"
for run in $runs; do
  dev="${run%%:*}"; prec="${run##*:}"
  timeout 240 "$WORKER" eval --model "$work/tiny" --train eval_data/demo/on_topic.jsonl \
    --eval "$work/eval.jsonl" --config "$work/parity.toml" --device "$dev" --precision "$prec" \
    --json > "$OUT/parity-$dev-$prec.json" 2>>"$OUT/log.txt" || say "parity run $run failed"
  say "parity $run: $(cat "$OUT/parity-$dev-$prec.json" 2>/dev/null | head -c 300)"
done

say "3. random model with $SHAPE shapes"
timeout 300 "$WORKER" random-model --out "$work/model" --shape "$SHAPE" --bf16 2>>"$OUT/log.txt" \
  || say "random-model failed"

sample() { # device memory every 200 ms while a benchmark runs
  if [ "$mode" = gpu ]; then
    nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -lms 200 > "$1" &
    sampler=$!
  fi
}
unsample() { [ -n "${sampler:-}" ] && kill "$sampler" 2>/dev/null; sampler=; }

say "4. Burn: worker bench --synthetic"
sample "$OUT/smi-burn.csv"
timeout 300 "$WORKER" bench --synthetic --model "$work/model" --device "$DEVICE" --seqs "$SEQS" \
  --batch 2 --steps "$STEPS" --eval-shape "$EVAL_SHAPE" > "$OUT/burn.json" 2>>"$OUT/log.txt" \
  || say "worker bench failed (exit $?)"
unsample
say "burn: $(head -c 600 "$OUT/burn.json")"

say "5. PyTorch + PEFT"
sample "$OUT/smi-peft.csv"
timeout 240 python3 scripts/gpu/peft_bench.py --model "$work/model" --device "$PEFT_DEVICE" --dtype "$PEFT_DTYPE" \
  --seqs "$SEQS" --batch 2 --steps "$STEPS" --eval-shape "$EVAL_SHAPE" --out "$OUT/peft.json" \
  > "$OUT/peft.log" 2>&1 || say "peft_bench failed (exit $?): $(tail -n 3 "$OUT/peft.log")"
unsample

say "6. summary"
python3 scripts/gpu/summarise.py "$OUT" | tee "$OUT/summary.md"
say "done in $(( $(date +%s) - started )) s"
