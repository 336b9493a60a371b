#!/usr/bin/env bash
# Creates .venv in the repository root and installs foresplat with its test dependencies.
# torch is installed first and pinned (constraints.txt) so no later install pulls a CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
.venv/bin/python -m pip install -q torch==2.13.0
.venv/bin/python -m pip install -q -c constraints.txt -e ".[test,onnx]"
# The browser viewer's optional extra (viser; pulls no torch), needed by tests/test_viewer.py.
.venv/bin/python -m pip install -q -c constraints.txt -e ".[viewer]"

# Optional model packages that install cleanly on a CPU (their tests run in CI): foresplat[anysplat].
# ffgs is installed without its declared dependencies: its torchvision (a CUDA build here) is imported
# only by its image preprocessing, which foresplat does not use; the model code needs torch,
# safetensors and huggingface-hub (installed first, with its own small dependencies).
.venv/bin/python -m pip install -q -c constraints.txt "huggingface-hub>=0.23"
.venv/bin/python -m pip install -q -c constraints.txt --no-deps "ffgs==0.1.0.dev1"
# foresplat[da3]: depth-anything-3 declares xformers / torchvision / open3d / gradio ... that its model
# code never imports; it is installed without dependencies, with what that code does import.
.venv/bin/python -m pip install -q -c constraints.txt addict omegaconf einops e3nn scipy
.venv/bin/python -m pip install -q -c constraints.txt --no-deps "depth-anything-3==0.1.1" "evo==1.38.1"

# Compile the native CPU renderer once now (cached in .venv/var/foresplat), not inside the first test.
.venv/bin/python -c "from foresplat.render.cpu import load_extension; load_extension()"
echo "native CPU renderer built"
