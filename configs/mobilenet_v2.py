r"""MobileNetV2 (Sandler et al. 2018, arXiv 1801.04381) with torchvision's recipe.

The paper (Sec. 6.1): TensorFlow, RMSPropOptimizer with decay and momentum 0.9, BatchNorm
after every layer, weight decay 4e-5, initial learning rate 0.045 decayed x0.98 per
epoch, 16 GPU asynchronous workers, batch 96; 72.0% top-1 at 224 (1.4x wide: 74.7%).
TF-slim's reproduction adds label smoothing 0.1, an exponential moving average of the
weights (0.9999) and Inception preprocessing (random-sized crops, colour distortion).

``paper`` runs the paper's optimiser: TensorFlow's RMSProp (``optimizer='rmsprop'``),
decay 0.9, momentum 0.9, epsilon 1.0 (TF-slim's default, which the paper does not
state), L2 weight decay 4e-5, lr 0.045 x0.98 per epoch, batch 96 (one synchronous
worker in place of 16 asynchronous ones).

The default is the recipe of torchvision's IMAGENET1K_V1 weights (71.88% top-1;
references/classification README): SGD momentum 0.9, batch 256 (8 x 32), lr 0.045, x0.98
after every epoch, weight decay 4e-5, 300 epochs. Weight decay applies to kernels only
(torchvision's script then decayed BN parameters and biases too), depthwise kernels
included. Data: TFDS ``imagenet2012`` through the host pipeline, with torchvision's
reference transform: random-resized crops (8%-100%, aspect 3/4-4/3) to 224 and flips;
test on the centre 224 of 256. Dropout 0.2 before the classifier (the model's default).

  python train.py --config configs/mobilenet_v2.py --workdir runs/mobilenet_v2
  # The 1.4x wide network (or any other width multiplier):
  python train.py --config configs/mobilenet_v2.py:width=1.4 --workdir runs/mobilenet_v2_140
  # Any dataset and size, e.g. CIFAR-10 at 32x32 (the network ends 1x1):
  python train.py --config configs/mobilenet_v2.py:width=0.5 --config.dataset=cifar10 \
      --config.image_size=32 --config.batch_size=128 --workdir runs/mobilenet_v2_c10
  # A minute on a CPU: synthetic 32x32 images, width 0.25, two epochs.
  python train.py --config configs/mobilenet_v2.py:tiny --workdir /tmp/mobilenet_v2_tiny
  # Fig. 6a's ablation, ReLU6 after each projection (a non-linear bottleneck):
  python train.py --config configs/mobilenet_v2.py \
      --config.model_kwargs.linear_bottleneck=False --workdir runs/mobilenet_v2_relu6
  # Fashion-MNIST on a CPU (experiments/mobilenet.py), padded to 32x32, 15 epochs:
  python train.py --config configs/mobilenet_v2.py:fashion_mnist,width=0.25 \
      --workdir runs/mobilenet_v2_fm

``fashion_mnist`` is ours, not the paper's: the recipe of
``configs/mobilenet_v1.py:fashion_mnist`` (Fashion-MNIST padded to 32x32, 2-pixel
translations and flips; SGD Nesterov 0.9, batch 128, lr 0.1, cosine over ``epochs``,
default 15, weight decay 4e-5).

Arguments (comma-separated): ``paper``, ``width=<float>`` (the width multiplier alpha),
``epochs=N`` (run length; the per-epoch decay follows), ``fashion_mnist``, ``tiny``.
"""

from configs import common
from configs.mobilenet_v1 import fashion_mnist_recipe


def get_config(arg=None):
  args = common.parse_arg(arg, paper=bool, width=float, epochs=int, fashion_mnist=bool,
                          tiny=bool)
  if args.get("paper") and args.get("fashion_mnist"):
    raise common.ConfigError("paper is the ImageNet recipe and fashion_mnist a CPU recipe: "
                             "give one of them")
  c = common.base()
  c.model = "mobilenet_v2"
  if "width" in args:
    c.model_kwargs.width_multiplier = args["width"]
  c.dataset = "imagenet2012"
  c.image_size = 224
  c.augment.inception_crop = True
  c.augment.flip = True
  c.augment.eval_crop_pct = 0.875
  num_epochs = args.get("epochs", 300)
  # x0.98 after every epoch: an exponential decay in steps.
  common.imagenet_sgd(c, batch_size=256, learning_rate=0.045, weight_decay=4e-5,
                      num_epochs=num_epochs, decay_epochs=range(1, num_epochs),
                      decay_factor=0.98, checkpoint_every_epochs=5)
  if args.get("paper"):
    common.tf_rmsprop(c)
    c.batch_size = 96
  if args.get("fashion_mnist"):
    fashion_mnist_recipe(c, args.get("epochs", 15))
  if args.get("tiny"):
    common.use_tiny_data(c, num_train=128)
    c.model_kwargs.width_multiplier = 0.25
    c.decay_epochs = (1,)
    c.log_every_steps = 1
  return c
