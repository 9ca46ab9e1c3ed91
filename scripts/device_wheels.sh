#!/usr/bin/env bash
# The wheels that the lent GPU machine's image lacks for wtours's training, evaluation and benchmarks (its image
# has torch, timm, torchvision, numpy, pandas, pyarrow, matplotlib, scikit-image, scipy, typer, rich, pyyaml,
# safetensors, opencv; it cannot reach a package registry). Run here, where pip can, before
# scripts/device_check.sh:
#
#     bash scripts/device_wheels.sh            # -> .whl/ (git-ignored), about 40 MiB
#
# Versions from constraints.txt; CPython 3.12 on manylinux x86-64, as the device runs (/work/.library/device).
set -euo pipefail
cd "$(dirname "$0")/.."
names=(pydantic pydantic_core annotated-types typing-inspection av setuptools)  # setuptools: to install wtours
pins=()
for name in "${names[@]}"; do
    pin=$(grep -i -E "^${name//[-_]/[-_]}==" constraints.txt) || { echo "device_wheels: no pin for $name in constraints.txt" >&2; exit 1; }
    pins+=("$pin")
done
rm -rf .whl && mkdir .whl
platforms=()
for tag in manylinux_2_28 manylinux_2_27 manylinux_2_17 manylinux2014 manylinux1; do
    platforms+=(--platform "${tag}_x86_64")
done
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    "${platforms[@]}" -d .whl "${pins[@]}"
ls -la .whl
