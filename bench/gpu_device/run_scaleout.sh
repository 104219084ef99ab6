#!/usr/bin/env bash
# Device side (nvidia-h200-x2), from the repo root, with .scaleout-carry/ carried (bench/gpu_device/prepare.sh)
# and the vLLM bundle staged by ../shared/tools/vllm-device/device_setup.sh in the same warm machine:
#   . .vllm-bundle/run/device_setup.sh && [ "$VB_READY" = 1 ] && bash bench/gpu_device/run_scaleout.sh
# Extra arguments go to bench/gpu_scaleout.py (default: vllm engine, 4 documents x 64 pages, 64 pages a
# task, 1000 tokens a page, 1 GPU worker then 2). Results: $OUT/scaleout.json, $OUT/scaleout_log.txt,
# $OUT/scaleout_workers.log. ENGINE=standin runs the stand-in engine (no vLLM, no GPU needed).
# Needs no .git: the repo root is found from this script's own path, and any folder works as the start.
set -u
OUT=${OUT:-/tmp/out}
case "$OUT" in /*) ;; *) OUT="$(pwd)/$OUT" ;; esac
cd "$(dirname "${BASH_SOURCE[0]}")/../.." || exit 2
C=${CARRY:-.scaleout-carry}
PY=${PY:-python3}
SITE=${SITE:-/tmp/dgsite}
ENGINE=${ENGINE:-vllm}
mkdir -p "$OUT"
[ -f "$C/site.tar.xz" ] || { echo "no $C/site.tar.xz: run bench/gpu_device/prepare.sh and carry $C"; exit 2; }
# unpacked once per machine, and again when a different site.tar.xz is carried (.complete holds its sha256)
SUM=$(sha256sum "$C/site.tar.xz" | cut -d' ' -f1)
if [ "$(cat "$SITE/.complete" 2>/dev/null)" != "$SUM" ]; then
  rm -rf "$SITE" && mkdir -p "$SITE" && xz -dc "$C/site.tar.xz" | tar -C "$SITE" -xf - \
    && echo "$SUM" > "$SITE/.complete"
fi
export PYTHONPATH=$SITE${PYTHONPATH:+:$PYTHONPATH}
export REDIS_SERVER="$(cd "$C" && pwd)/redis-server"
export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false HF_HUB_OFFLINE=1
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=index,name,memory.total --format=csv,noheader
"$REDIS_SERVER" --version || exit 3
"$PY" -c "import celery, kombu, redis, sqlalchemy, pydantic_settings, filetype, sentence_transformers; print('deps ok')" || exit 4
MODEL=()
if [ "$ENGINE" = vllm ]; then
  "$PY" -c "import vllm, torch; print('vllm', vllm.__version__, 'GPUs', torch.cuda.device_count())" || exit 5
  [ -f /tmp/dsocr2/tokenizer.json ] || "$PY" .vllm-bundle/run/make_model_dir.py /tmp/dsocr2 || exit 6
  MODEL=(--model /tmp/dsocr2)
fi
set -o pipefail
"$PY" -m bench.gpu_scaleout --engine "$ENGINE" "${MODEL[@]}" --out "$OUT" "$@" 2>&1 | tee "$OUT/scaleout_log.txt" \
  | grep --line-buffered -v -E "Loading weights|Writing model shards"
