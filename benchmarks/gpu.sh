#!/bin/bash
# The GPU rows of the README's speed table, on one lent GPU (../shared/DEVICE.md):
#   throughput: ResNet-50 and ConvNeXt-T at 224x224, batch 256, bf16, this project's train
#     step against torchvision/timm eager and torch.compile, in one invocation each;
#   speedrun: configs/speedrun_fashion_mnist.py:$SPEEDRUN (default gpu) over 5 seeds
#     (needs $SHARED_DIR/data/fashion_mnist/fashion_mnist.npz).
#   OUT=runs/gpu bash benchmarks/gpu.sh                  # both
#   OUT=runs/gpu WHAT=speedrun bash benchmarks/gpu.sh    # one
#   OUT=runs/gpu WHAT=speedrun SPEEDRUN=airbench94_muon bash benchmarks/gpu.sh
#     # airbench94_muon's recipe (the 95.2% target)
#   OUT=runs/gpu WHAT=speedrun SPEEDRUN=airbench94_muon SEEDS=3 \
#       SPEEDRUN_ARGS=--config.dtype=bfloat16 SPEEDRUN_TAG=bf16 bash benchmarks/gpu.sh
#     # the same in bfloat16 (the anchor computes in float16); SPEEDRUN_ARGS are config
#     # overrides for every seed, SPEEDRUN_TAG names their outputs apart
set -o pipefail
OUT=${OUT:-runs/gpu}
mkdir -p "$OUT"
python3 -c "import sys, jax, flax, optax, torch, torchvision, timm; print('python', sys.version.split()[0], '| jax', jax.__version__, '| flax', flax.__version__, '| optax', optax.__version__, '| torch', torch.__version__, '| torchvision', torchvision.__version__, '| timm', timm.__version__, '|', jax.devices())"
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,power.limit,memory.total --format=csv
# JAX and PyTorch share the card in one process: JAX's pool gets 45% of it.
export XLA_PYTHON_CLIENT_MEM_FRACTION=${XLA_PYTHON_CLIENT_MEM_FRACTION:-0.45}
WHAT=${WHAT:-throughput speedrun}
[[ $WHAT == *throughput* ]] && for m in ${MODELS:-resnet50 convnext_t}; do
  python3 benchmarks/throughput.py --model "$m" --batch 256 --image_size 224 \
      --dtype bfloat16 --compare torch --peak_tflops 989 --warmup 5 --windows 7 \
      --window_steps 10 --out "$OUT/$m.md" 2>&1 | tee "$OUT/$m.log"
done
# The runs' checkpoints stay in $RUNS; their table, numbers and plot are copied to $OUT.
RUNS=${RUNS:-/tmp/gpu_runs}
SPEEDRUN=${SPEEDRUN:-gpu}
NAME=speedrun_${SPEEDRUN//,/_}${SPEEDRUN_TAG:+_$SPEEDRUN_TAG}  # no commas in file names
[[ $WHAT == *speedrun* ]] && python3 benchmarks/speedrun.py \
    --config configs/speedrun_fashion_mnist.py:$SPEEDRUN --seeds ${SEEDS:-5} --target 95.2 \
    --workdir "$RUNS/$NAME" ${SPEEDRUN_ARGS:-} 2>&1 | tee "$OUT/$NAME.log" && \
    for f in md json png; do
      cp "$RUNS/$NAME/speedrun.$f" "$OUT/$NAME.$f"
    done
cat "$OUT"/*.md 2>/dev/null
