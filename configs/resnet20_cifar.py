r"""ResNet-20 for CIFAR-10 (He et al. 2015, Sec. 4.2): 0.27M parameters, option-A shortcuts.

The paper's recipe: SGD momentum 0.9, weight decay 1e-4, batch 128, lr 0.1 divided by 10
at 32k and 48k iterations (about epochs 82 and 123), 164 epochs in all; 4-pixel padding
with random crops and horizontal flips. The paper reports 8.75% test error.

  python train.py --config configs/resnet20_cifar.py --workdir runs/resnet20_cifar10
  # Fashion-MNIST from ../shared/data, padded to 32x32:
  python train.py --config configs/resnet20_cifar.py:fashion_mnist --workdir runs/r20_fm
  # The same in 15 epochs (cosine, nesterov, wd 5e-4, random erasing 0.25), for a CPU:
  python train.py --config configs/resnet20_cifar.py:fashion_mnist,short --workdir runs/r20_fm15
  # Seconds on a CPU: a narrow network on synthetic data (used by the tests).
  python train.py --config configs/resnet20_cifar.py:tiny --workdir /tmp/r20_tiny
  # The other depths of Sec. 4.2, and their plain twins (no shortcuts; Fig. 6 left):
  python train.py --config configs/resnet20_cifar.py:depth=56,plain --workdir runs/plain56

Arguments (comma-separated): ``fashion_mnist``, ``short``, ``recipe``, ``tiny``,
``depth=20|32|44|56|110`` (default 20: ``resnet{depth}``), ``plain`` (the plain net of
that depth, ``model_kwargs.shortcut='plain'``; the degradation experiment,
``experiments/degradation.py``).

``recipe`` adds the regularisers of ConvNeXt's recipe (REFERENCE.md) on top of the
chosen schedule: RandAugment rand-m9-mstd0.5-inc1, Mixup 0.8 / CutMix 1.0 (switch 0.5),
label smoothing 0.1 and an EMA of the weights (0.999 with timm's warm-up, since runs here
are thousands of steps, not ConvNeXt's 94k). The crops stay 4-pixel translations: a
random-resized crop down to 8% of a 32x32 image is a different experiment. For the
with / without comparison (README, Results):

  python train.py --config configs/resnet20_cifar.py:fashion_mnist,short,recipe \
      --workdir runs/r20_fm15_recipe

``short`` is our recipe, not the paper's: a schedule that fits a CPU. 164 epochs of
Fashion-MNIST are 10M images, about 19 hours at the ~143 img/s of a 2-core CPU run as two
devices (README, Training); 15 epochs with cosine decay, Nesterov momentum, weight decay
5e-4 (short schedules favour a larger decay) and random erasing with p=0.25 (Zhong et al.
2017 found it lowers Fashion-MNIST error for every ResNet they tried) take about 1 h 50
min that way (measured: 143 img/s; test accuracy 90.3% after 5 of the 15 epochs), and
about 2 h 20 min as one device (100-118 img/s):

  XLA_FLAGS="--xla_force_host_platform_device_count=2 --xla_cpu_multi_thread_eigen=false" \
      python train.py --config configs/resnet20_cifar.py:fashion_mnist,short --workdir runs/r20_fm15
"""

import os

from configs import common

DEPTHS = (20, 32, 44, 56, 110)  # 6n + 2, the CIFAR nets of Sec. 4.2 (models/resnet.py)


def get_config(arg=None):
  args = common.parse_arg(arg, fashion_mnist=bool, short=bool, recipe=bool, tiny=bool,
                          depth=DEPTHS, plain=bool)
  c = common.base()
  c.model = f"resnet{args.get('depth', 20)}"
  if args.get("plain"):
    c.model_kwargs.shortcut = "plain"
  c.dataset = "cifar10"
  c.augment.crop_padding = 4
  c.augment.flip = True
  c.num_epochs = 164
  c.batch_size = 128
  c.eval_batch_size = 500
  c.optimizer = "sgd"
  c.learning_rate = 0.1
  c.momentum = 0.9
  c.weight_decay = 1e-4
  c.schedule = "step"
  c.decay_epochs = (82, 123)
  c.decay_factor = 0.1
  c.checkpoint_every_epochs = 10
  if args.get("fashion_mnist"):
    shared = os.environ.get("SHARED_DIR", "../shared")
    c.dataset = "npz:" + os.path.join(shared, "data/fashion_mnist/fashion_mnist.npz")
    c.pad = 2  # 28 -> 32
  if args.get("short"):
    c.num_epochs = 15
    c.schedule = "cosine"
    c.nesterov = True
    c.weight_decay = 5e-4
    c.augment.random_erasing = 0.25
    c.checkpoint_every_epochs = 1
  if args.get("recipe"):
    c.augment.rand_augment = "rand-m9-mstd0.5-inc1"
    c.augment.mixup = 0.8
    c.augment.cutmix = 1.0
    c.label_smoothing = 0.1
    c.ema_decay = 0.999
    c.ema_warmup = True
  if args.get("tiny"):
    c.dataset = "synthetic"
    c.synthetic.shape = (16, 16, 3)
    c.synthetic.num_train = 256
    c.synthetic.num_test = 100
    c.model_kwargs.width = 4
    c.num_epochs = 2
    c.batch_size = 32
    c.eval_batch_size = 64
    c.decay_epochs = (1,)
  return c
