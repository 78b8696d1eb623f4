#!/usr/bin/env bash
# One machine, all its accelerators: a single train.py process drives every local GPU (or
# TPU core) and splits each batch over them, so nothing else is needed; this script only
# adds the GPU settings that help and checks its arguments.
#
#   launch/local.sh configs/resnet20_cifar.py runs/r20 [--config.KEY=VALUE ...]
#   CUDA_VISIBLE_DEVICES=0,1 launch/local.sh ...      # only some of the GPUs
#
# The batch size must be a multiple of the number of devices (train.py says so if not).
# Running the same command again resumes from the workdir's last checkpoint.
set -euo pipefail
if [[ $# -lt 2 ]]; then
  echo "usage: launch/local.sh CONFIG[:ARG] WORKDIR [--config.KEY=VALUE ...]" >&2
  exit 2
fi
config=$1 workdir=$2
shift 2
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

if command -v nvidia-smi > /dev/null 2>&1; then
  # Keep some GPU memory for cuDNN workspaces and NCCL (JAX preallocates 75% otherwise).
  export XLA_PYTHON_CLIENT_MEM_FRACTION=${XLA_PYTHON_CLIENT_MEM_FRACTION:-0.90}
  # Overlap the gradient all-reduce (and FSDP's all-gathers) with computation.
  export XLA_FLAGS="${XLA_FLAGS:-} --xla_gpu_enable_latency_hiding_scheduler=true"
fi
exec "${PYTHON:-python}" "$here/../train.py" --config "$config" --workdir "$workdir" "$@"
