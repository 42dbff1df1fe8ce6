#!/usr/bin/env bash
# The GPU benchmark on a lent device machine, as one prepared command.
#
#   bash benchmarks/gpu_device.sh fetch            # here, where PyPI is reachable: wheels → .whl/
#   bash benchmarks/gpu_device.sh run [ARGS...]    # there, with .whl carried; ARGS go to gpu_bench.py
#
# The device image's python3 already has torch (CUDA), transformers, accelerate, peft,
# safetensors and huggingface_hub, but not diffusers nor ldstudio's small pure-Python needs;
# those travel as the wheels below. Checked on 2026-11-26 against the image's versions
# (transformers 5.17.0, huggingface_hub 1.33.0, tokenizers 0.23.2, accelerate 1.15.0) in a
# local environment: `gpu_bench.py --smoke` and the CPU check of both architectures ran there.
#
# gpu_bench.py includes the canvas pass (img2img, "Only masked" 100 px on 2048²) and the
# hires fix ×2 (lanczos, latent) against txt2img, and upscaling (the bundled upscaler's MP/s,
# a ×4 upscale job with the tiled refine: time, peak VRAM).
# From the device tool, leaving room for a rerun inside a 15-minute lease:
#   run(command="bash benchmarks/gpu_device.sh run --budget 300", carry=[".whl"], timeout_s=480)
# then copy the returned gpu.json to docs/benchmarks/ and run `python benchmarks/report.py`.
set -euo pipefail
cd "$(dirname "$0")/.."

WHEELS=(
    diffusers==0.42.1
    importlib_metadata==10.2.0
    platformdirs==4.14.8
    torchsde==0.2.6
    trampoline==0.1.2
)

case "${1:-}" in
fetch)
    # Pure-Python wheels: the platform tags only satisfy pip's cross-target download rules.
    python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
        --implementation cp --platform manylinux2014_x86_64 -d .whl "${WHEELS[@]}"
    ;;
run)
    shift
    ls .whl/*.whl >/dev/null 2>&1 || { echo "no wheels in .whl/: run 'fetch' here first and carry .whl" >&2; exit 2; }
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site .whl/*.whl
    out="${OUT:-/tmp/gpu-bench}"
    mkdir -p "$out"
    export PYTHONPATH="/tmp/site:$PWD" HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1
    export LDSTUDIO_HOME=/tmp/ldstudio-home LDSTUDIO_BENCH_DIR="$out"
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv || true
    python3 -c 'import torch, diffusers, transformers; print("torch", torch.__version__, "· diffusers", diffusers.__version__, "· transformers", transformers.__version__)'
    python3 benchmarks/gpu_bench.py "$@" 2>&1 | tee "$out/gpu_bench.log"
    # The API's overhead on the GPU (#18), where the image has FastAPI and uvicorn: their
    # wheels are not carried (they would shadow the image's own typing_extensions/pydantic).
    if python3 -c 'import fastapi, uvicorn, requests' 2>/dev/null; then
        python3 benchmarks/bench_api.py --device cuda --runs 10 2>&1 | tee "$out/bench_api.log"
    else
        echo "bench_api: skipped (no fastapi/uvicorn/requests in this image)" | tee "$out/bench_api.log"
    fi
    # Ray Data and Ray Serve on the GPU (#19): one replica/actor on the one GPU, where the
    # image has Ray (its wheels are far too big to carry).
    if python3 -c 'import ray.serve, ray.data' 2>/dev/null; then
        timeout 420 python3 benchmarks/bench_cluster.py --actors 1 --device cuda 2>&1 | tee "$out/bench_cluster.log"
    else
        echo "bench_cluster: skipped (no ray[serve,data] in this image)" | tee "$out/bench_cluster.log"
    fi
    ;;
*)
    echo "usage: bash benchmarks/gpu_device.sh fetch | run [gpu_bench.py arguments]" >&2
    exit 2
    ;;
esac
