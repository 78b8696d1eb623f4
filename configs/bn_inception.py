r"""BN-Inception (Ioffe & Szegedy 2015, arXiv 1502.03167) with the BN-x5 recipe (Sec. 4.2).

The paper trains GoogLeNet-style Inception nets with SGD and momentum on mini-batches of
32 on a distributed system. "Inception" used lr 0.0015; "BN-x5", the batch-normalized
network with the changes of Sec. 4.2.1, 5x that (0.0075); "BN-x30" 30x (0.045). The
changes: a higher learning rate, no dropout, L2 weight decay divided by 5, a learning-rate
decay 6x faster than Inception's, no LRN, more thorough shuffling, fewer photometric
distortions. Reported (Figure 3, single crop, validation top-1): Inception 72.2% after
31.0M steps; BN-x5 73.0%, passing 72.2% after 2.1M steps (14x fewer); BN-x30 74.8%.

Here: batch 256 and the learning rates scaled linearly from batch 32 (x8): BN-x5 0.06,
BN-x30 0.36, after a 2-epoch linear warm-up (ours, for the 8x scaling); weight decay 4e-5
(Caffe GoogLeNet's 2e-4 / 5, also TF-slim's inception_v2 value) on kernels only; the
decay: GoogLeNet's x0.96 every 8 epochs made 6x faster, i.e. x0.96 every 4/3 epoch
(our reading: the paper names no Inception rate other than GoogLeNet's); 100 epochs
(ours: the paper gives no run length; the rate has fallen 20x by then). No dropout,
no auxiliary heads (the model has none). Data: GoogLeNet's protocol (configs/googlenet.py:
random-resized crops of 8%-100%, aspect 3/4-4/3, flips, centre-crop test) with the
photometric distortions reduced, as Sec. 4.2.1 asks ("we focus on more 'real' images by
distorting them less"): colour jitter 0.25, half of GoogLeNet's 0.5 (our reading; the
paper gives no figure). ImageNet (TFDS ``imagenet2012``) streams through the host
pipeline.

  python train.py --config configs/bn_inception.py --workdir runs/bn_inception_x5
  python train.py --config configs/bn_inception.py:x30 --workdir runs/bn_inception_x30
  # Any dataset whose size is a multiple of 32 (the stride-2 modules need even maps):
  python train.py --config configs/bn_inception.py --config.dataset=cifar10 \
      --config.image_size=32 --config.batch_size=128 --workdir runs/bn_inception_c10
  # A few minutes on a CPU: synthetic 32x32 images, one epoch (compilation dominates).
  python train.py --config configs/bn_inception.py:tiny --workdir /tmp/bn_inception_tiny

Arguments (comma-separated): ``x30`` (BN-x30's learning rate), ``epochs=N``, ``tiny``.
"""

import math

from configs import common


def get_config(arg=None):
  args = common.parse_arg(arg, x30=bool, epochs=int, tiny=bool)
  c = common.base()
  c.model = "bn_inception"
  c.dataset = "imagenet2012"
  c.image_size = 224
  c.augment.inception_crop = True
  c.augment.flip = True
  c.augment.color_jitter = 0.25  # "reduce the photometric distortions": half GoogLeNet's
  c.augment.eval_crop_pct = 0.875
  num_epochs = args.get("epochs", 100)
  # x0.96 every 4/3 epoch: an exponential decay in steps.
  common.imagenet_sgd(
      c, batch_size=256, learning_rate=(0.045 if args.get("x30") else 0.0075) * 256 / 32,
      weight_decay=2e-4 / 5, num_epochs=num_epochs,
      decay_epochs=(round(k * 4 / 3, 4) for k in range(1, math.ceil(num_epochs * 3 / 4))),
      decay_factor=0.96, warmup_epochs=2.0, checkpoint_every_epochs=5)
  if args.get("tiny"):
    # 32x32: the smallest input with even maps in 3c and 4e.
    common.use_tiny_data(c, shape=(32, 32, 3), num_train=128, num_epochs=1)
    c.learning_rate = 0.0075
    c.warmup_epochs = 0.0
    c.log_every_steps = 1
  return c
