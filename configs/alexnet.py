r"""AlexNet (Krizhevsky, Sutskever & Hinton 2012) with the paper's recipe (Sec. 5).

SGD with momentum 0.9 and weight decay 5e-4, batch 128, dropout 0.5, lr 0.01 divided by
10 three times "when the validation error rate stopped improving", about 90 passes over
ImageNet (ILSVRC-2012, TFDS ``imagenet2012``). We fix the plateaus as a step schedule at
epochs 30, 60 and 80 of 90. The paper reports 40.7% top-1 / 18.2% top-5 validation
error for one net (38.1% / 16.4% for five), averaging 10 crops at test time.

Data: 224x224 images and horizontal flips. The paper took random 224x224 crops of 256x256
images; the trainer's crop is a random translation of the 224 image by up to 16 pixels
(the same range of offsets), with reflected borders. Its PCA colour noise and the
mean-image subtraction are not reproduced (per-channel mean/std normalisation instead).
ImageNet at 224 does not fit the in-memory host pipeline: it needs the streaming one, or
``--config.num_train_examples`` / a smaller dataset (``imagenette``) meanwhile.

  python train.py --config configs/alexnet.py --workdir runs/alexnet             # paper
  python train.py --config configs/alexnet.py:torchvision --workdir runs/alexnet_tv
  python train.py --config configs/alexnet.py:bn --workdir runs/alexnet_bn
  python train.py --config configs/alexnet.py --config.dataset=imagenette --workdir runs/a_in
  # Seconds on a CPU: 1/8 width at 63x63 (the smallest input) on synthetic data.
  python train.py --config configs/alexnet.py:tiny --workdir /tmp/alexnet_tiny

Arguments (comma-separated): ``torchvision`` (torchvision's single-tower net), ``bn``
(BatchNorm instead of LRN), ``tiny``. Other datasets need ``--config.image_size`` of at
least 63 (e.g. ``--config.dataset=cifar10 --config.image_size=63``).
"""

from configs import common


def get_config(arg=None):
  args = common.parse_arg(arg)
  c = common.base()
  c.model = "alexnet"
  if args.get("torchvision"):
    c.model = "alexnet_torchvision"
  if args.get("bn"):
    c.model = "alexnet_bn"
  c.model_kwargs.dropout_rate = 0.5
  c.dataset = "imagenet2012"
  c.image_size = 224
  c.augment.crop_padding = 16  # offsets of a 224 crop from 256: up to 16 px each way
  c.augment.crop_mode = "reflect"
  c.augment.flip = True
  c.num_epochs = 90
  c.batch_size = 128
  c.eval_batch_size = 500
  c.optimizer = "sgd"
  c.learning_rate = 0.01
  c.momentum = 0.9
  c.weight_decay = 5e-4
  c.schedule = "step"
  c.decay_epochs = (30, 60, 80)
  c.decay_factor = 0.1
  c.checkpoint_every_epochs = 1
  if args.get("tiny"):
    common.use_tiny_data(c, shape=(63, 63, 3))  # the smallest input AlexNet accepts
    c.model_kwargs.width = 0.125
    c.augment.crop_padding = 4
    c.decay_epochs = (1,)
  return c
