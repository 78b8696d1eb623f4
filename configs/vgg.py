r"""VGG (Simonyan & Zisserman 2014, arXiv 1409.1556) with the paper's recipe (Sec. 3.1).

Mini-batch SGD with momentum 0.9, batch 256, weight decay 5e-4, dropout 0.5 on fc6 and
fc7, lr 0.01 divided by 10 "when the validation set accuracy stopped improving" (three
times), stopped after 370K iterations = 74 epochs of ImageNet (TFDS ``imagenet2012``).
We fix the plateaus as a step schedule at epochs 30, 50 and 65 (our choice: the paper
does not give them). Paper, single net, 224 crops (Table 3, S=256, Q=256): VGG-11 29.6%,
VGG-13 28.7%, VGG-16 27.0%, VGG-19 27.3% top-1 error.

Data (Sec. 3.1), the paper's multi-scale training: scale jittering, each image's shorter
side resized to S drawn from [256, 512], a random 224 crop, horizontal flips and the
random RGB colour shift of AlexNet (PCA lighting 0.1); ``--config.augment.scale_jitter=
256,256`` is the paper's single-scale S=256 training. Test (Sec. 3.2): by default one
centre 224 crop of the image resized to 256 (the single-crop convention of later papers;
our choice); ``:dense`` is the paper's dense evaluation: the fully connected layers run
as convolutions over the image at each scale Q in {256, 384, 512} and its flip, the
softmax averaged (Table 4's multi-scale test for S in [256, 512]). Deviation: each scale
sees the central Q x Q square rather than the whole uncropped image, so a batch has one
shape. The paper initialised VGG-13/16/19 from a trained VGG-11; we start from
torchvision's init, which trains every depth from scratch. ImageNet streams through the
host pipeline.

  python train.py --config configs/vgg.py:depth=16 --workdir runs/vgg16
  python train.py --config configs/vgg.py:depth=19,bn --workdir runs/vgg19_bn
  python train.py --config configs/vgg.py:depth=16,dense --workdir runs/vgg16_dense
  # Any dataset at 32x32 or more (the smallest input: five 2x2 pools):
  python train.py --config configs/vgg.py:depth=11,bn --config.dataset=cifar10 \
      --config.image_size=32 --config.batch_size=128 --workdir runs/vgg11_bn_c10
  python train.py --config configs/vgg.py --config.dataset=digits --config.image_size=32 \
      --config.augment.flip=false --workdir runs/vgg11_digits
  # Sec. 4.1's shallow net: B with each pair of 3x3 convs as one 5x5 (experiments/vgg.py):
  python train.py --config configs/vgg.py:depth=13 --config.model_kwargs.stack=single \
      --workdir runs/vgg13_5x5
  # Seconds on a CPU: VGG-11 at 1/8 width, 32x32 synthetic data.
  python train.py --config configs/vgg.py:tiny --workdir /tmp/vgg_tiny
  python train.py --config configs/vgg.py:dense,tiny --workdir /tmp/vgg_dense_tiny
  # The BatchNorm ablation (get_sweep below): BN off and on, at lr 0.01 and 0.05, VGG-11 at
  # 1/4 width on 10,000 Fashion-MNIST images padded to 32x32, 5 epochs; a few minutes per
  # run on a 2-core CPU (estimated from 300-400 img/s; not timed end to end).
  python launch/sweep.py --config configs/vgg.py --sweep_dir runs/vgg_bn

Arguments (comma-separated): ``depth=11|13|16|19`` (default 11), ``bn`` (BatchNorm after
every conv), ``dense`` (the paper's dense multi-scale evaluation), ``tiny``.
"""

from configs import common

DEPTHS = (11, 13, 16, 19)
# The words get_config and get_sweep take.
ARGS = dict(depth=DEPTHS, bn=bool, dense=bool, tiny=bool)


def get_config(arg=None):
  args = common.parse_arg(arg, **ARGS)
  depth = args.get("depth", 11)
  c = common.base()
  c.model = f"vgg{depth}" + ("_bn" if args.get("bn") else "")
  c.model_kwargs.dropout_rate = 0.5
  c.dataset = "imagenet2012"
  c.image_size = 224
  c.augment.scale_jitter = (256, 512)  # multi-scale training, S in [256, 512]
  c.augment.flip = True
  c.augment.lighting = 0.1  # AlexNet's random RGB colour shift
  c.augment.eval_crop_pct = 0.875
  if args.get("dense"):
    c.augment.eval_mode = "dense"
    c.augment.eval_scales = (256, 384, 512)  # Q = S_min, (S_min + S_max) / 2, S_max
  common.imagenet_sgd(c, batch_size=256, learning_rate=0.01, weight_decay=5e-4,
                      num_epochs=74, decay_epochs=(30, 50, 65))
  if args.get("tiny"):
    common.use_tiny_data(c, shape=(32, 32, 3))  # the smallest input VGG accepts
    c.model_kwargs.width = 0.125
    c.decay_epochs = (1,)
  return c


def get_sweep(arg=None):
  """BatchNorm off and on (``vgg{depth}`` vs ``vgg{depth}_bn``) at two learning rates.

  Small enough for a CPU: 1/4 width (fc layers 128 wide), 10,000 Fashion-MNIST training
  images padded to 32x32 (VGG's smallest input) and all 10,000 test images, 5 epochs,
  cosine schedule, no augmentation, Glorot init; the rest is the paper's recipe (SGD
  momentum 0.9, weight decay 5e-4, dropout 0.5). With ``tiny``: the same two models on
  get_config's synthetic data (tests).
  """
  args = common.parse_arg(arg, **ARGS)
  depth = args.get("depth", 11)
  variants = [("vgg", f"vgg{depth}"), ("vgg_bn", f"vgg{depth}_bn")]
  if args.get("tiny"):
    return [{"name": name, "model": model} for name, model in variants]
  small = {"dataset": common.shared_npz("fashion_mnist"), "image_size": None, "pad": 2,
           "num_train_examples": 10_000, "num_epochs": 5, "batch_size": 128,
           "schedule": "cosine", "augment.scale_jitter": (0, 0), "augment.flip": False,
           "augment.lighting": 0.0, "augment.eval_crop_pct": 0.0,
           "model_kwargs.width": 0.25, "model_kwargs.hidden_units": 512,
           # The paper's from-scratch init. torchvision's N(0, 0.01) fc layers, only 128
           # wide here, shrink the logits so much that without BN nothing trains.
           "model_kwargs.weight_init": "glorot"}
  return [{"name": f"{name}_lr{lr}", "model": model, "learning_rate": lr, **small}
          for name, model in variants for lr in (0.01, 0.05)]
