"""The fields every config has. Model configs start from ``base()`` and change a few.

Keeping one schema means every ``--config.FIELD=VALUE`` works with every config, and
``training.config.validate`` checks them all in one place.
"""

import os

import ml_collections
from ml_collections import config_dict


def base() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()

  # Model: a name from models.list_models() and overrides of its module's fields.
  c.model = "lenet1989"
  # Pretrained weights to start from (fine-tuning): a torchvision/timm .pth or
  # .safetensors file, or a directory written by tools/convert_weights.py. The classifier
  # is re-initialised when the class count differs. Ignored when resuming.
  c.init_from = config_dict.placeholder(str)
  c.model_kwargs = ml_collections.ConfigDict()
  c.dtype = "float32"  # compute dtype: float32 or bfloat16 (params stay float32)
  # Devices: the batch is split over all of them. mesh.fsdp > 1 also splits parameters
  # and optimizer state over groups of that many devices (FSDP); 1 = data parallel.
  c.mesh = ml_collections.ConfigDict(dict(fsdp=1))
  # BatchNorm statistics over the global batch (synchronised) or per device ("ghost"
  # batches of batch_size / devices, as the original multi-GPU papers had).
  c.batchnorm_stats = "global"  # global | per_device

  # Data: digits | synthetic | npz:<path> | a TFDS name (mnist, cifar10, ...).
  c.dataset = "digits"
  c.data_dir = config_dict.placeholder(str)  # TFDS data_dir; None = TFDS's default
  c.download = True  # let TFDS try to download a dataset that is not prepared
  c.image_size = config_dict.placeholder(int)  # resize on load (None = native size)
  c.pad = 0  # zero-pad each side on load (MNIST 28 -> 32: pad=2)
  c.num_train_examples = 0  # 0: all; else a fixed class-balanced subset (seed 0)
  # dataset (its mean/std) | symmetric ([-1, 1]) | unit ([0, 1]) | imagenet (the
  # ImageNet mean/std that torchvision and timm weights expect)
  c.normalization = "dataset"
  c.synthetic = ml_collections.ConfigDict(dict(
      shape=(32, 32, 3), num_classes=10, num_train=1024, num_test=256, seed=0))

  # Augmentation, inside the compiled step.
  c.augment = ml_collections.ConfigDict(dict(
      crop_padding=0,  # random crop after padding = translation by up to this many pixels
      crop_mode="constant",  # constant (zero = background) | reflect | edge
      flip=False,  # horizontal flip (not for digits)
      random_erasing=0.0))  # probability of erasing a random rectangle (Zhong et al. 2017)

  # Optimisation.
  c.num_epochs = 10
  c.batch_size = 128
  c.eval_batch_size = 512
  c.loss = "cross_entropy"  # cross_entropy | mse (squared error on +-1 targets)
  c.label_smoothing = 0.0
  c.aux_loss_weight = 0.3  # auxiliary classifiers' loss weight (GoogLeNet; paper: 0.3)
  c.optimizer = "sgd"  # sgd | adam | adamw | rmsprop
  c.learning_rate = 0.1
  c.momentum = 0.9  # sgd, rmsprop
  c.nesterov = False  # sgd
  c.b1 = 0.9  # adam, adamw
  c.b2 = 0.999
  c.rms_decay = 0.9  # rmsprop: decay of the mean square
  c.eps = 1e-8  # adam, adamw, rmsprop (TF-slim's MobileNet/Inception runs used 1.0)
  c.weight_decay = 0.0  # on kernels only; L2 for sgd/adam/rmsprop, decoupled for adamw
  c.grad_clip_norm = 0.0  # clip the gradients' global norm to this (0: off; ViT 1.0)
  c.schedule = "cosine"  # constant | step | cosine
  c.warmup_epochs = 0.0  # linear warm-up from 0
  c.decay_epochs = ()  # step schedule: epochs at which the rate is multiplied by...
  c.decay_factor = 0.1
  c.min_learning_rate = 0.0  # cosine floor

  # Bookkeeping.
  c.seed = 0
  c.log_every_steps = 0  # 0: four times per epoch
  c.eval_every_epochs = 1
  c.checkpoint_every_epochs = 1
  c.keep_checkpoints = 3
  # Run the steps between log points in one on-device loop (fast for tiny models at
  # small batches); off: one compiled call per step, since XLA:CPU runs convolutions
  # several times slower inside a loop. Both give the same result.
  c.device_loop = False
  c.stop_after_steps = 0  # stop this run early (then resume), e.g. for time-limited jobs
  return c


def shared_npz(name: str) -> str:
  """``npz:`` dataset name for ../shared/data/<name>/<name>.npz (or under $SHARED_DIR)."""
  root = os.environ.get("SHARED_DIR", "../shared")
  return "npz:" + os.path.join(root, "data", name, f"{name}.npz")


def use_tiny_data(c: ml_collections.ConfigDict, shape=(32, 32, 3), num_train: int = 256,
                  num_test: int = 64, num_epochs: int = 2) -> None:
  """The ``tiny`` variant of a config: synthetic images, batch 32, seconds on a CPU (the
  tests run every config this way). The config then shrinks its model."""
  c.dataset = "synthetic"
  c.image_size = None
  c.synthetic.shape = tuple(shape)
  c.synthetic.num_train = num_train
  c.synthetic.num_test = num_test
  c.augment.flip = False  # synthetic class templates are not mirror-symmetric
  c.num_epochs = num_epochs
  c.batch_size = 32
  c.eval_batch_size = 64


def parse_arg(arg: str | None) -> dict[str, str | bool]:
  """``"tiny,res=128"`` -> ``{"tiny": True, "res": "128"}`` (big_vision style)."""
  out = {}
  for item in filter(None, (arg or "").split(",")):
    key, eq, value = item.partition("=")
    out[key.strip()] = value.strip() if eq else True
  return out
