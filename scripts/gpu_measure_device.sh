#!/usr/bin/env bash
# The GPU measurement on a lent device machine, in one command: scripts/gpu_measure.py's JSON and log under $OUT.
#
# The device machine has python3 with torch (2.11+cu130), lightning, torchmetrics, torchvision, tensorboard, numpy,
# pillow, scipy and pyyaml, no internet and no torch-fidelity, which `import gan_lightning` needs: it travels as a
# wheel in .whl/ (pure Python, its dependencies are all there). The project itself is not installed there: the
# repository goes on PYTHONPATH.
#
# 1. On this machine, once (the wheel in .whl/, which git ignores through .git/info/exclude):
#      cd /work/main && mkdir -p .git/info \
#        && (grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo /.whl/ >> .git/info/exclude) \
#        && python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#             --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 -d .whl torch-fidelity==0.4.0
#    (0.4.0: the venv's, `pip show torch-fidelity`), then check the measurement's tests, the slow ones included
#    (`pytest tests/test_benchmark.py -m "slow or not slow"`), and the CPU smoke test pass:
#      python scripts/gpu_measure.py --out /tmp/g.json --accelerator cpu --precision 32-true \
#        --configs dcgan_cifar10 --variants loader --skip fid loader --iters 1 --rounds 1 --warmup 1
# 2. The device tool's `run`, once (about 8 minutes: the measurement's 420 s budget, 40 s of slack for it to kill
#    its last measurement and write the JSON, 15 s more before `timeout` kills it outright):
#      command: bash scripts/gpu_measure_device.sh      carry: [".whl"]      timeout_s: 560
#    gpu.json and gpu_measure.log come back under the reply's files_at; give the machine back after.
#    Extra arguments go to gpu_measure.py (e.g. `--variants data_on_device+channels_last+compile`);
#    GPU_MEASURE_BUDGET_S=N sets its --budget-s (the timeout follows).
set -euo pipefail
cd "$(dirname "$0")/.."

out_dir="${OUT:-.}"
budget_s="${GPU_MEASURE_BUDGET_S:-420}"
mkdir -p "$out_dir"

if [ -d .whl ] && compgen -G ".whl/*.whl" > /dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
    export PYTHONPATH="/tmp/site${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"

# Fails here, in seconds, without a GPU or without a module the measurement imports.
python3 -c 'import torch; print(torch.__version__, torch.cuda.is_available(), torch.cuda.get_device_name())'
python3 -c 'import lightning, torch_fidelity, gan_lightning.bench.gpu; print("lightning", lightning.__version__, "torch-fidelity", torch_fidelity.__version__)'

status=0
PYTHONUNBUFFERED=1 timeout -k 15 "$((budget_s + 40))" \
    python3 scripts/gpu_measure.py --budget-s "$budget_s" --out "$out_dir/gpu.json" "$@" 2>&1 \
    | tee "$out_dir/gpu_measure.log" || status=$?
echo "gpu_measure.py exit status $status; JSON: $out_dir/gpu.json"
exit "$status"
