r"""ImageNet ResNets (He et al. 2015, arXiv 1512.03385) with the classic 90-epoch recipe.

The recipe (REFERENCE.md's "ResNet-50 classic", the torchvision reference and Goyal et
al. 2017): SGD with momentum 0.9, batch 256, learning rate 0.1 per 256 images (scaled
linearly with the batch: ``batch=N`` sets lr 0.1 x N / 256), weight decay 1e-4 (on
kernels only here; the paper decays every weight), 90 epochs, lr divided by 10 at
epochs 30, 60 and 80. torchvision's ResNet-50 (v1.5) reaches 76.13% top-1 this way.
The paper itself (Sec. 3.4) divided the rate by 10 "when the error plateaus" over 60e4
iterations (about 120 epochs) and augmented with scale jitter (shorter side in
[256, 480], random 224 crops), flips, per-pixel mean subtraction and AlexNet's colour
augmentation; the classic recipe uses Inception-style random-resized crops (8%-100% of
the area, aspect ratio 3/4-4/3) and flips.

Augmentation: random-resized crops to 224 (bilinear) and flips; evaluation resizes to
256 and takes the centre 224 (crop 0.875). ``scale_aug`` is the paper's own (Sec. 3.4):
shorter side drawn from [256, 480], random 224 crops, flips and PCA lighting 0.1;
``--config.augment.eval_mode=ten_crop`` is the paper's 10-crop testing (Table 3). Data: TFDS ``imagenet2012`` through the host
pipeline (decode and crop on the CPUs); any other dataset with ``--config.dataset``.

``convnext_recipe``: the same network trained with ConvNeXt's recipe, the first step of
the ConvNeXt paper's roadmap (76.1% -> 78.8%; REFERENCE.md, Table 10):
``configs.common.convnext_recipe`` (300 epochs of AdamW, RandAugment, Mixup / CutMix,
random erasing, label smoothing, EMA, stochastic depth 0.1). The model is then
``roadmap_resnet50``, which is ResNet-50 exactly (same variables, 25,557,032
parameters) with the stochastic depth that the recipe needs.

  python train.py --config configs/resnet50.py --workdir runs/resnet50
  python train.py --config configs/resnet50.py:version=v1,zero_init --workdir runs/r50_v1
  python train.py --config configs/resnet50.py:depth=18,batch=512 --workdir runs/resnet18
  python train.py --config configs/resnet50.py:depth=152,version=v2 --workdir runs/r152_v2
  python train.py --config configs/resnet50.py:convnext_recipe --workdir runs/r50_convnext_recipe
  python train.py --config configs/resnet50.py:scale_aug --config.augment.eval_mode=ten_crop \
      --workdir runs/resnet50_paper_aug
  # Any dataset (any size from 32x32 up; CIFAR-style nets are configs/resnet20_cifar.py):
  python train.py --config configs/resnet50.py:depth=50 --config.dataset=imagenette \
      --workdir runs/resnet50_imagenette
  # Seconds on a CPU: ResNet-50 at 1/8 width on synthetic 32x32 images, 2 epochs.
  python train.py --config configs/resnet50.py:tiny --workdir /tmp/resnet50_tiny
  python train.py --config configs/resnet50.py:convnext_recipe,tiny --workdir /tmp/r50_cr

Arguments (comma-separated): ``depth=18|34|50|101|152`` (default 50),
``version=v1|v1.5|v2`` (default v1.5; model ``resnet{depth}``, ``resnet{depth}_v1`` or
``resnet{depth}_v2``), ``zero_init`` (zero_init_residual, Goyal et al. 2017),
``batch=N`` (batch size, lr scaled linearly), ``scale_aug`` (the paper's scale
augmentation), ``convnext_recipe``, ``tiny``.
"""

from configs import common

DEPTHS = (18, 34, 50, 101, 152)
VERSIONS = ("v1", "v1.5", "v2")


def model_name(depth: int, version: str, prefix: str = "") -> str:
  """``resnet50``, ``resnet18_v1``, ``se_resnet101_v2``: the registered model's name."""
  return f"{prefix}resnet{depth}" + ("" if version == "v1.5" else f"_{version}")


def get_config(arg=None):
  args = common.parse_arg(arg, depth=DEPTHS, version=VERSIONS, zero_init=bool, batch=int,
                          scale_aug=bool, convnext_recipe=bool, tiny=bool)
  depth, version = args.get("depth", 50), args.get("version", "v1.5")
  c = common.base()
  c.model = model_name(depth, version)
  if args.get("zero_init"):
    c.model_kwargs.zero_init_residual = True
  c.dataset = "imagenet2012"
  c.image_size = 224
  c.augment.inception_crop = True
  c.augment.resize_method = "bilinear"
  c.augment.flip = True
  c.augment.eval_crop_pct = 0.875
  if args.get("scale_aug"):
    common.resnet_scale_augmentation(c)
  c.num_epochs = 90
  c.batch_size = args.get("batch", 256)
  c.eval_batch_size = 500
  c.optimizer = "sgd"
  c.learning_rate = 0.1
  c.lr_base_batch_size = 256  # 0.1 per 256 images, scaled with the batch
  c.momentum = 0.9
  c.weight_decay = 1e-4
  c.schedule = "step"
  c.decay_epochs = (30, 60, 80)
  c.decay_factor = 0.1
  c.checkpoint_every_epochs = 1
  if args.get("convnext_recipe"):
    if (depth, version) != (50, "v1.5") or args.get("scale_aug"):
      raise common.ConfigError("convnext_recipe is ResNet-50 (v1.5); drop depth= / version=")
    c.model = "roadmap_resnet50"
    common.convnext_recipe(c, batch_size=args.get("batch", 4096))
    c.decay_epochs = ()
    c.checkpoint_every_epochs = 5
  if args.get("tiny"):
    common.use_tiny_data(c)
    c.model_kwargs.width = 8
    c.decay_epochs = () if c.schedule == "cosine" else (1,)
    if c.model.startswith("roadmap"):
      c.model_kwargs.depths = (1, 1, 1, 1)
      c.batch_size, c.lr_base_batch_size, c.learning_rate = 32, 0, 1e-3
      c.warmup_epochs, c.ema_decay = 0.0, 0.9
  return c
