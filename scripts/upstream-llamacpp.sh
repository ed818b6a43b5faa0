#!/usr/bin/env bash
# A real OpenAI-compatible engine for rail's remote backend: llama.cpp's server (llama-cpp-python) serving
# the tiny BLOOM on CPU, in its own virtual environment under .upstream/ (ignored by git).
#
#   scripts/upstream-llamacpp.sh setup    # venv, compile llama.cpp (minutes), converter dependencies
#   scripts/upstream-llamacpp.sh convert  # build the tiny BLOOM (python -m rail.tiny) and convert it to GGUF
#   scripts/upstream-llamacpp.sh start    # serve it on 127.0.0.1:${PORT:-8090}; prints the URL
#   scripts/upstream-llamacpp.sh stop     # stop the server started by `start`
#
# Then: RAIL_TEST_UPSTREAM_URL=http://127.0.0.1:8090 RAIL_TEST_UPSTREAM_CONTEXT=32 \
#       python -m pytest tests/server/test_upstream_engine.py
# `convert` and `start` need rail's own venv active (for `python -m rail.tiny`); `setup` does not.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=.upstream
VENV=$ROOT/llamacpp-venv
VERSION=0.3.36
PORT=${PORT:-8090}
SRC=$ROOT/llama_cpp_python-$VERSION/vendor/llama.cpp

setup() {
  mkdir -p "$ROOT"
  [ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
  # torch first, from the CPU build (an unpinned torch pulls GBs of CUDA wheels); the converter imports it.
  "$VENV/bin/pip" install -q torch==2.13.0
  # Compiles llama.cpp from the sdist: about 5 minutes on 2 free cores (pip caches the wheel afterwards).
  CMAKE_BUILD_PARALLEL_LEVEL=${CMAKE_BUILD_PARALLEL_LEVEL:-2} "$VENV/bin/pip" install -q "llama-cpp-python[server]==$VERSION"
  # The converter ships in the sdist, not in the wheel: unpack it beside the venv.
  if [ ! -f "$SRC/convert_hf_to_gguf.py" ]; then
    "$VENV/bin/pip" download -q --no-deps --no-binary :all: "llama-cpp-python==$VERSION" -d "$ROOT/sdist"
    tar xzf "$ROOT/sdist/llama_cpp_python-$VERSION.tar.gz" -C "$ROOT"
  fi
  "$VENV/bin/pip" install -q "transformers<5.20" safetensors sentencepiece protobuf
}

convert() {
  python -m rail.tiny "$ROOT/tiny" >/dev/null
  # The converter knows tokenizers by a hash of their output on a fixed text; the tiny BLOOM's tokenizer is
  # trained locally, so no hash matches. It is BLOOM's kind of byte-level BPE: declare BLOOM's pre-tokenizer.
  "$VENV/bin/python" - "$SRC" "$ROOT/tiny/tiny-bloom" "$ROOT/tiny-bloom.gguf" <<'PY'
import runpy
import sys

src, model, out = sys.argv[1:4]
sys.path.insert(0, src)
from conversion.base import TextModel  # noqa: E402

TextModel.get_vocab_base_pre = lambda self, tokenizer: "bloom"
sys.argv = ["convert_hf_to_gguf.py", model, "--outfile", out, "--outtype", "f32"]
runpy.run_path(f"{src}/convert_hf_to_gguf.py", run_name="__main__")
PY
  ls -l "$ROOT/tiny-bloom.gguf"
}

start() {
  [ -f "$ROOT/tiny-bloom.gguf" ] || convert
  # The tiny model was trained on 32-token contexts; --n_ctx keeps llama.cpp within them.
  "$VENV/bin/python" -m llama_cpp.server --model "$ROOT/tiny-bloom.gguf" --model_alias tiny-bloom \
    --host 127.0.0.1 --port "$PORT" --n_ctx 32 >"$ROOT/server.log" 2>&1 &
  echo $! >"$ROOT/server.pid"
  for _ in $(seq 1 120); do
    if curl -sf "http://127.0.0.1:$PORT/v1/models" >/dev/null; then
      echo "http://127.0.0.1:$PORT"
      return 0
    fi
    sleep 0.5
  done
  echo "llama.cpp did not start; see $ROOT/server.log" >&2
  stop
  return 1
}

stop() {
  if [ -f "$ROOT/server.pid" ]; then
    kill "$(cat "$ROOT/server.pid")" 2>/dev/null || true
    rm -f "$ROOT/server.pid"
  fi
}

case "${1:-}" in
  setup) setup ;;
  convert) convert ;;
  start) start ;;
  stop) stop ;;
  *) echo "usage: $0 setup|convert|start|stop" >&2; exit 2 ;;
esac
