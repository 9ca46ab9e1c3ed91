#!/usr/bin/env bash
# Issue 12's GPU checks in one command, for a session that is lent the GPU machine (/work/.library/device): the
# GPU tests, the three training benchmarks and the CPU study's presets on the GPU. A session gets 15 minutes of
# device time in all and 10 per command, so this runs in about 9 and every part has its own time limit.
#
#     bash scripts/device_wheels.sh                      # here, once: the wheels the device lacks, into .whl/
#     run(command="bash scripts/device_check.sh", carry=[".whl"], timeout_s=600)      # the device tool
#     run(command="bash scripts/device_check.sh study", carry=[".whl"], timeout_s=600)   # one part again
#
# Parts (all by default, in this order): tests, dino, dora, videomae, study. What comes back, under $OUT (at most
# 8 files): check.log (everything printed), env.txt, pytest.log, bench_{dino,dora,videomae}.json, study.md,
# study.json. A part that fails or runs out of time is logged and the next one runs; the exit status says whether
# every part passed. Each benchmark prints the README's table rows into check.log. STUDY_ARGS replaces the study's
# options (default: --device cuda --jobs 3 --knn-every 100, seeds 0 1 2); WHEELS the wheel folder (.whl).
set -uo pipefail
cd "$(dirname "$0")/.."
PARTS=("$@")
[ ${#PARTS[@]} -eq 0 ] && PARTS=(tests dino dora videomae study)
for name in "${PARTS[@]}"; do  # a wrong name is one line before any device time goes on installing
    case $name in tests | dino | dora | videomae | study) ;;
        *) echo "device_check: unknown part $name (tests, dino, dora, videomae, study)" >&2; exit 2 ;;
    esac
done
OUT=${OUT:-device-out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
exec > >(tee -a "$OUT/check.log") 2>&1

# The device's python3 holds torch, timm and most of the rest; a venv on top of it takes the carried wheels and
# wtours itself, editable, as CI installs it (the package maps trainers/, analysis/, ... into wtours.*).
VENV=${DEVICE_VENV:-/tmp/wtours-venv}
if [ ! -x "$VENV/bin/python" ]; then
    python3 -m venv --system-site-packages "$VENV" || exit 1
    "$VENV/bin/python" -m pip install -q --no-index --no-deps --no-compile "${WHEELS:-.whl}"/*.whl || exit 1
    "$VENV/bin/python" -m pip install -q --no-index --no-deps --no-build-isolation -e . || exit 1
fi
PY="$VENV/bin/python"
{
    date -u
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1
    "$PY" -c "import torch, timm, wtours; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), \
torch.cuda.get_device_name(0) if torch.cuda.is_available() else '-', 'timm', timm.__version__)"
    nproc
} > "$OUT/env.txt" 2>&1
cat "$OUT/env.txt"

failed=()
part() {  # part NAME SECONDS LOG COMMAND...: one part under its time limit, timed, its output also in LOG (or -)
    local name=$1 limit=$2 log=$3 status
    shift 3
    echo "=== $name (limit ${limit} s) $(date -u +%T)"
    local began=$SECONDS
    if [ "$log" = - ]; then
        timeout --kill-after=10 "$limit" "$@"
        status=$?
    else
        timeout --kill-after=10 "$limit" "$@" 2>&1 | tee "$log"
        status=${PIPESTATUS[0]}
    fi
    echo "=== $name: exit $status after $((SECONDS - began)) s"
    [ "$status" -eq 0 ] || failed+=("$name (exit $status)")
}

STUDY_ARGS=${STUDY_ARGS:---device cuda --jobs 3 --knn-every 100}
for name in "${PARTS[@]}"; do
    case $name in
        tests) part tests 120 "$OUT/pytest.log" "$PY" -m pytest -q -m gpu -p no:cacheprovider \
            tests/trainers/training/test_gpu.py tests/pipelines/test_clipdata.py tests/analysis/test_frames.py ;;
        dino) part dino 120 - "$PY" benchmarks/bench_dino.py --modes official,bf16,fp32,bf16-compile --steps 20 \
            --out "$OUT/bench_dino.json" ;;
        dora) part dora 90 - "$PY" benchmarks/bench_dora.py --batch-sizes 8,16 --steps 10 \
            --out "$OUT/bench_dora.json" ;;
        videomae) part videomae 90 - "$PY" benchmarks/bench_videomae.py --steps 10 --out "$OUT/bench_videomae.json" ;;
        study)  # finished runs are kept in /tmp/study-gpu: a second call goes on where the first stopped
            rm -f /tmp/study-gpu/study.md /tmp/study-gpu/study.json
            # shellcheck disable=SC2086  # STUDY_ARGS is a list of options
            part study 200 - "$PY" benchmarks/study_cpu.py $STUDY_ARGS --workdir /tmp/study-gpu
            if [ -f /tmp/study-gpu/study.md ]; then  # it exits 1 when a target is not met: a result, not a failure
                cp /tmp/study-gpu/study.md /tmp/study-gpu/study.json "$OUT/"
                [ "${failed[-1]:-}" = "study (exit 1)" ] && unset 'failed[-1]' && echo "=== study: a target not met"
            fi ;;
    esac
done
if [ ${#failed[@]} -gt 0 ]; then
    echo "device_check: failed: ${failed[*]}"
    exit 1
fi
echo "device_check: every part passed"
