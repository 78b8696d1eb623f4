r"""SE-ResNets (Hu et al. 2017, "Squeeze-and-Excitation Networks", arXiv 1709.01507).

The paper's ImageNet recipe (its implementation section; we could not read the paper's
full text here: the figures below are the issue's summary of it, and the authors' SENet
repository confirms "in our paper, we use large batch-size (1024) and learning rate
(0.6)"): synchronous SGD with momentum 0.9, batch 1024, lr 0.6 divided by 10 every 30
epochs, 100 epochs from scratch with He init, reduction ratio 16. Weight decay 1e-4 (the
value of the ResNet recipe; not checked against the paper). Scaling: ``batch=N`` sets lr
0.6 x N / 1024. Augmentation in the paper: random-resized crops to 224 (Inception's scale and aspect
ratio ranges) and flips, mean-RGB subtraction; the SENet repository adds small
rotations and pixel jitter. Paper: SE-ResNet-50 23.29% top-1 error (single 224 crop);
timm's seresnet50 weights: 76.71% top-1.

What runs: the paper's random-resized crops (8%-100%, aspect 3/4-4/3) to 224 and flips,
per-channel mean/std normalisation (for the mean-RGB subtraction), and the single 224
centre crop of 256 at test; ``--config.augment.eval_mode=ten_crop`` for 10-crop testing,
``:scale_aug`` for the ResNet paper's scale augmentation (shorter side in [256, 480],
random 224 crops, PCA lighting). The SENet repository's rotations and pixel jitter are
not reproduced. Data: TFDS ``imagenet2012``, streamed by the host pipeline. Batch 1024
needs 4x the activation memory of the classic ResNet batch of 256: ``batch=256`` (lr
0.15) fits one accelerator more easily.

  python train.py --config configs/se_resnet50.py --workdir runs/se_resnet50
  python train.py --config configs/se_resnet50.py:batch=256 --workdir runs/se_resnet50_b256
  python train.py --config configs/se_resnet50.py:depth=101,version=v1 --workdir runs/se101
  # Seconds on a CPU: SE-ResNet-50 at 1/8 width on synthetic 32x32 images, 2 epochs.
  python train.py --config configs/se_resnet50.py:tiny --workdir /tmp/se_resnet50_tiny

Arguments (comma-separated): ``depth=18|34|50|101|152`` (default 50),
``version=v1|v1.5|v2`` (default v1.5 as timm's seresnet50; the paper's Caffe models are
v1), ``zero_init``, ``batch=N``, ``scale_aug``, ``tiny``.
"""

from configs import common
from configs.resnet50 import DEPTHS, VERSIONS, model_name


def get_config(arg=None):
  args = common.parse_arg(arg, depth=DEPTHS, version=VERSIONS, zero_init=bool, batch=int,
                          scale_aug=bool, tiny=bool)
  c = common.base()
  version = args.get("version", "v1.5")
  c.model = model_name(args.get("depth", 50), "v1.5", prefix="se_")
  if version != "v1.5":
    c.model_kwargs.version = version
  if args.get("zero_init"):
    c.model_kwargs.zero_init_residual = True
  c.dataset = "imagenet2012"
  c.image_size = 224
  c.augment.inception_crop = True
  c.augment.flip = True
  c.augment.eval_crop_pct = 0.875
  if args.get("scale_aug"):
    common.resnet_scale_augmentation(c)
  batch = args.get("batch", 1024)
  common.imagenet_sgd(c, batch_size=batch, learning_rate=0.6 * batch / 1024,
                      weight_decay=1e-4, num_epochs=100, decay_epochs=(30, 60, 90))
  if args.get("tiny"):
    common.use_tiny_data(c)
    c.model_kwargs.width = 8
    c.learning_rate = 0.6 * c.batch_size / 1024
    c.decay_epochs = (1,)
  return c
