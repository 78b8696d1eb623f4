r"""MobileNet v1 (Howard et al. 2017, arXiv 1704.04861) with a practical SGD recipe.

The paper (Sec. 4): TensorFlow, RMSprop with asynchronous gradient descent as for
Inception V3; less regularisation and data augmentation than for large models (no side
heads, no label smoothing, smaller range of crop sizes) and very little or no weight
decay on the depthwise filters. It gives no learning rate, batch size or schedule
(TF-slim's defaults: RMSprop lr 0.01 x0.94 every 2 epochs, weight decay 4e-5 on
non-depthwise convs). 70.6% top-1 at 224 (Table 6).

``paper`` runs TF-slim's defaults for the paper's optimiser: RMSProp (TensorFlow's;
decay 0.9, momentum 0.9, epsilon 1.0), lr 0.01 x0.94 every 2 epochs, L2 weight decay
4e-5, batch 32 per worker (one synchronous worker here), no label smoothing.

The paper's recipe is incomplete, so by default we use a common modern SGD recipe (ours,
not the paper's): SGD momentum 0.9, batch 256, lr 0.1 after a 5-epoch linear warm-up,
cosine decay to 0 over 150 epochs, weight decay 4e-5 on kernels (depthwise kernels
included: our optimizer cannot exclude them), label smoothing 0.1
(``--config.label_smoothing=0`` is the paper's choice). Dropout 0.001 before the
classifier (the model's default, TF-slim's keep-prob 0.999). Data: TFDS
``imagenet2012`` through the host pipeline; Inception-style random-resized crops to 224
with the paper's "smaller range of crop sizes": 25%-100% of the area (our figure; the
paper gives none, Inception's is 8%-100%), aspect 3/4-4/3, flips, no photometric
distortions ("less data augmentation"); test on the centre 224 of 256.

  python train.py --config configs/mobilenet_v1.py --workdir runs/mobilenet_v1
  # A thinner network (the paper's alpha = 0.75, 0.5, 0.25):
  python train.py --config configs/mobilenet_v1.py:width=0.5 --workdir runs/mobilenet_v1_050
  # Any dataset and size, e.g. CIFAR-10 at 32x32 (the network ends 1x1):
  python train.py --config configs/mobilenet_v1.py:width=0.5 --config.dataset=cifar10 \
      --config.image_size=32 --config.batch_size=128 --workdir runs/mobilenet_v1_c10
  # A minute on a CPU: synthetic 32x32 images, width 0.25, two epochs.
  python train.py --config configs/mobilenet_v1.py:tiny --workdir /tmp/mobilenet_v1_tiny
  # Table 4's "Conv MobileNet" (full 3x3 convolutions, 29.3M parameters at alpha 1):
  python train.py --config configs/mobilenet_v1.py --config.model_kwargs.separable=False \
      --workdir runs/conv_mobilenet
  # Fashion-MNIST on a CPU (experiments/mobilenet.py), padded to 32x32, 15 epochs:
  python train.py --config configs/mobilenet_v1.py:fashion_mnist,width=0.25 \
      --workdir runs/mobilenet_v1_fm

``fashion_mnist`` is ours, not the paper's: Fashion-MNIST from ../shared/data, zero-padded
28 -> 32 (so the network ends 1x1, as on CIFAR), 2-pixel random translations and flips,
no crops at test; SGD with Nesterov momentum 0.9, batch 128, lr 0.1, cosine decay to 0
over ``epochs`` (default 15), no warm-up, weight decay 4e-5 (the paper's "little" decay),
no label smoothing. ``configs/mobilenet_v2.py:fashion_mnist`` is the same recipe.

Arguments (comma-separated): ``paper``, ``width=<float>`` (the width multiplier alpha),
``epochs=N``, ``fashion_mnist``, ``tiny``.
"""

from configs import common


def fashion_mnist_recipe(c, num_epochs: int) -> None:
  """The ``fashion_mnist`` CPU recipe of both MobileNet configs (the docstring above), in
  place of ``c``'s ImageNet data and schedule."""
  c.dataset = common.shared_npz("fashion_mnist")
  c.image_size = None
  c.pad = 2  # 28 -> 32
  c.augment.inception_crop = False
  c.augment.crop_padding = 2
  c.augment.flip = True
  c.augment.eval_crop_pct = 0.0
  common.imagenet_sgd(c, batch_size=128, learning_rate=0.1, weight_decay=4e-5,
                      num_epochs=num_epochs, schedule="cosine", checkpoint_every_epochs=1)
  c.nesterov = True


def get_config(arg=None):
  args = common.parse_arg(arg, paper=bool, width=float, epochs=int, fashion_mnist=bool,
                          tiny=bool)
  if args.get("paper") and args.get("fashion_mnist"):
    raise common.ConfigError("paper is the ImageNet recipe and fashion_mnist a CPU recipe: "
                             "give one of them")
  c = common.base()
  c.model = "mobilenet_v1"
  if "width" in args:
    c.model_kwargs.width_multiplier = args["width"]
  c.dataset = "imagenet2012"
  c.image_size = 224
  c.augment.inception_crop = True
  c.augment.crop_scale = (0.25, 1.0)  # "smaller range of crop sizes" (our figure)
  c.augment.flip = True
  c.augment.eval_crop_pct = 0.875
  common.imagenet_sgd(c, batch_size=256, learning_rate=0.1, weight_decay=4e-5,
                      num_epochs=args.get("epochs", 150), schedule="cosine",
                      warmup_epochs=5.0, label_smoothing=0.1, checkpoint_every_epochs=5)
  if args.get("paper"):
    common.tf_rmsprop(c)
    c.learning_rate = 0.01
    c.batch_size = 32
    c.label_smoothing = 0.0
    c.warmup_epochs = 0.0
    c.schedule = "step"
    c.decay_epochs = tuple(range(2, c.num_epochs, 2))
    c.decay_factor = 0.94
  if args.get("fashion_mnist"):
    fashion_mnist_recipe(c, args.get("epochs", 15))
  if args.get("tiny"):
    common.use_tiny_data(c, num_train=128)
    c.model_kwargs.width_multiplier = 0.25
    c.warmup_epochs = 0.0
    c.log_every_steps = 1
  return c
