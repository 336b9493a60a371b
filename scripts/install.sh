#!/usr/bin/env bash
# Creates .venv in the repository root and installs foresplat with its test dependencies.
# torch is installed first and pinned (constraints.txt) so no later install pulls a CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
.venv/bin/python -m pip install -q torch==2.13.0
.venv/bin/python -m pip install -q -c constraints.txt -e ".[test]"
echo "foresplat installed in $(pwd)/.venv"
