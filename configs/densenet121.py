r"""DenseNet (Huang et al. 2016, arXiv 1608.06993) with the paper's recipes (Sec. 4.2).

ImageNet (default): SGD with Nesterov momentum 0.9 (no dampening), batch 256, lr 0.1
divided by 10 at epochs 30 and 60, 90 epochs, weight decay 1e-4, He init. The paper
reports 25.02% top-1 / 7.71% top-5 single-crop error for DenseNet-121 (Table 3; 23.80%
for 169, 22.58% for 201); torchvision's weights reach 74.43% top-1. Data: the paper
trains with fb.resnet.torch's augmentation, which this config is: random-resized crops
(8%-100%, aspect 3/4-4/3) to 224, colour jitter 0.4 (brightness, contrast, saturation),
PCA lighting 0.1 and flips; single-crop test on the centre 224 of 256 (Table 3 also
reports 10-crop: ``--config.augment.eval_mode=ten_crop``). ``:scale_aug`` trains with the
ResNet paper's scale augmentation instead (shorter side in [256, 480], random 224 crops,
lighting). ImageNet (TFDS ``imagenet2012``) streams through the host pipeline.

CIFAR (``:cifar``, DenseNet-BC L=100 k=12, 0.77M parameters): batch 64, 300 epochs, lr
0.1 divided by 10 at 50% and 75% of training (epochs 150 and 225), weight decay 1e-4,
Nesterov momentum 0.9, the standard augmentation (4-pixel zero padding with random
crops, horizontal flips), no dropout. Paper: 4.51% error on CIFAR-10+, 22.27% on
CIFAR-100+ (Table 2). ``:cifar,noaug`` is the paper's un-augmented setting (C10: 5.92%):
no crops or flips, dropout 0.2 after every conv but the first.

Not reproduced: the paper's weight decay also applies to BN parameters and the
classifier's bias; ours to kernels only (the trainer's rule).

  python train.py --config configs/densenet121.py --workdir runs/densenet121
  python train.py --config configs/densenet121.py:depth=169 --workdir runs/densenet169
  python train.py --config configs/densenet121.py:cifar --workdir runs/densenet_bc100_c10
  python train.py --config configs/densenet121.py:cifar,noaug --workdir runs/dn_bc100_noaug
  # CIFAR-100, or the bigger CIFAR nets (densenet_bc250_k24, densenet_bc190_k40):
  python train.py --config configs/densenet121.py:cifar --config.dataset=cifar100 \
      --workdir runs/densenet_bc100_c100
  python train.py --config configs/densenet121.py:cifar \
      --config.model=densenet_bc250_k24 --workdir runs/densenet_bc250_c10
  # Any dataset: the ImageNet models need inputs of 32x32 or more.
  python train.py --config configs/densenet121.py --config.dataset=imagenette \
      --config.image_size=128 --config.batch_size=64 --workdir runs/densenet121_inette
  # Seconds on a CPU: a 2-2-2-2 DenseNet with k=4 on 32x32 synthetic data.
  python train.py --config configs/densenet121.py:tiny --workdir /tmp/densenet_tiny

Arguments (comma-separated): ``depth=121|161|169|201`` (ImageNet model, default 121),
``cifar`` (densenet_bc100_k12 on CIFAR-10), ``noaug`` (with ``cifar``), ``scale_aug``
(ImageNet: the ResNet paper's scale augmentation), ``epochs=N``
(run length; the decay epochs keep their fractions of it), ``tiny``.
"""

from configs import common

DEPTHS = (121, 161, 169, 201)


def get_config(arg=None):
  args = common.parse_arg(arg, depth=DEPTHS, cifar=bool, noaug=bool, scale_aug=bool,
                          epochs=int, tiny=bool)
  if args.get("noaug") and not args.get("cifar"):
    raise common.ConfigError("noaug is the paper's CIFAR setting: give it with cifar")
  if "depth" in args and args.get("cifar"):
    raise common.ConfigError("depth= picks the ImageNet model; cifar has its own "
                             "(densenet_bc100_k12; others with --config.model)")
  c = common.base()
  c.optimizer = "sgd"
  c.momentum = 0.9
  c.nesterov = True
  c.learning_rate = 0.1
  c.weight_decay = 1e-4
  c.schedule = "step"
  c.decay_factor = 0.1
  c.augment.flip = True
  if args.get("cifar"):
    c.model = "densenet_bc100_k12"
    c.dataset = "cifar10"
    c.augment.crop_padding = 4  # zero padding, as the paper's "standard" augmentation
    if args.get("noaug"):
      c.augment.crop_padding = 0
      c.augment.flip = False
      c.model_kwargs.dropout_rate = 0.2
    c.num_epochs = args.get("epochs", 300)
    c.batch_size = 64
    c.eval_batch_size = 500
    c.decay_epochs = (c.num_epochs // 2, c.num_epochs * 3 // 4)
    c.checkpoint_every_epochs = 10
  else:
    depth = args.get("depth", 121)
    c.model = f"densenet{depth}"
    c.dataset = "imagenet2012"
    c.image_size = 224
    c.augment.inception_crop = True  # fb.resnet.torch: RandomSizedCrop, ColorJitter,
    c.augment.color_jitter = 0.4     # Lighting
    c.augment.lighting = 0.1
    c.augment.eval_crop_pct = 0.875
    if args.get("scale_aug"):
      common.resnet_scale_augmentation(c)
    c.num_epochs = args.get("epochs", 90)
    c.batch_size = 256
    c.eval_batch_size = 500
    c.decay_epochs = (c.num_epochs // 3, c.num_epochs * 2 // 3)
    c.checkpoint_every_epochs = 1
  if args.get("tiny"):
    common.use_tiny_data(c)
    c.model_kwargs.growth_rate = 4
    c.model_kwargs.num_init_features = 8
    c.model_kwargs.block_config = (2, 2, 2) if args.get("cifar") else (2, 2, 2, 2)
    if args.get("cifar"):
      c.augment.crop_padding = 2
    c.decay_epochs = (1,)
  return c
