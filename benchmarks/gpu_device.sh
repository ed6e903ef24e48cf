#!/bin/bash
# The GPU check of benchmarks/gpu.py on a bare GPU machine that has torch but not the project's other
# packages: a virtual environment over the system's packages, the wheels in ./whl (cp312; see
# docs/devices.md), the cuda tests, then the benchmark. Outputs go to $OUT (default ./gpu-out).
# Usage: bash benchmarks/gpu_device.sh [benchmark budget in s]
set -u
cd "$(dirname "$0")/.."
OUT=${OUT:-gpu-out}
mkdir -p "$OUT"
BUDGET=${1:-330}
T0=$(date +%s)
python3 -c "import sys; print(sys.version.split()[0], sys.prefix)"
nvidia-smi -L
python3 -m venv --without-pip /tmp/v || exit 1
python3 -m pip install -q --no-index --no-deps --no-compile --ignore-installed --prefix /tmp/v whl/*.whl || exit 1
SP=$(/tmp/v/bin/python -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
python3 -c "import site; print('\n'.join(site.getsitepackages()))" > "$SP/_device_base.pth"
export PATH=/tmp/v/bin:$PATH PYTHONUNBUFFERED=1 OMP_NUM_THREADS=1
PY=/tmp/v/bin/python
$PY -c "import torch, mpi4py, pettingzoo, pydantic; from mpi4py import MPI; \
print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.is_available(), 'mpi4py', mpi4py.__version__, \
MPI.Get_library_version().splitlines()[0])" || exit 1
mpiexec -n 2 $PY -c "from mpi4py import MPI; print('mpi rank', MPI.COMM_WORLD.Get_rank())" || exit 1
echo "setup $(( $(date +%s) - T0 )) s"
timeout 90 $PY -m pytest -q -p no:cacheprovider -rs tests/test_devices.py 2>&1 | tail -12 | tee "$OUT/pytest.txt"
echo "tests done $(( $(date +%s) - T0 )) s"
timeout "$BUDGET" $PY -m benchmarks.gpu --device cuda --jobs 4 --timeout 150 \
    --parts "${PARTS:-layouts,determinism,update,act,speed}" --out "$OUT" 2>&1 | tee "$OUT/bench.log"
echo "all done $(( $(date +%s) - T0 )) s"
