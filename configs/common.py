"""The fields every config has. Model configs start from ``base()`` and change a few.

Keeping one schema means every ``--config.FIELD=VALUE`` works with every config, and
``training.config.validate`` checks them all in one place.
"""

import difflib
import os
from typing import Any

import ml_collections
from ml_collections import config_dict

from input_pipeline import recipe

from training.config import ConfigError


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
  # The library that runs the convolutions: "xla" (XLA's own, any device) or "onednn"
  # (oneDNN's direct kernels on one CPU device, float32: kernels/onednn.py; on a 2-core
  # CPU the step 1.35x (LeNet-5) to 4.5x (ResNet-50) faster than with XLA's, README "Speed").
  c.conv_backend = "xla"
  # Devices: the batch is split over all of them. mesh.fsdp > 1 also splits parameters
  # and optimizer state over groups of that many devices (FSDP); 1 = data parallel.
  c.mesh = ml_collections.ConfigDict(dict(fsdp=1))
  # BatchNorm statistics over the global batch (synchronised) or per device ("ghost"
  # batches of batch_size / devices, as the original multi-GPU papers had).
  c.batchnorm_stats = "global"  # global | per_device

  # Data: digits | synthetic | npz:<path> | mnist16:<path to mnist.npz> (LeNet-1989's
  # reproduction data) | a TFDS name (mnist, cifar10, ...).
  c.dataset = "digits"
  c.data_dir = config_dict.placeholder(str)  # TFDS data_dir; None = TFDS's default
  c.download = True  # let TFDS try to download a dataset that is not prepared
  c.image_size = config_dict.placeholder(int)  # resize on load (None = native size)
  c.pad = 0  # zero-pad each side on load (MNIST 28 -> 32: pad=2)
  c.num_train_examples = 0  # 0: all; else a fixed class-balanced subset (seed 0)
  # Add a "none of the above" class (blank and off-centre digits, labelled num_classes)
  # to both splits, as LeNet-5's sliding-window training did (input_pipeline/background.py).
  c.background_class = False
  # A one-channel dataset's grey images repeated as R, G and B on load (for RGB networks
  # and weights on digits; the airbench Fashion-MNIST anchor's 32x32x3). In memory only.
  c.grey_to_rgb = False
  # dataset (its mean/std) | symmetric ([-1, 1]) | unit ([0, 1]) | imagenet (the
  # ImageNet mean/std that torchvision and timm weights expect) | cifar10 (CIFAR-10's
  # mean/std per channel, airbench's loaders') | lenet5 (background -0.1, ink 1.175:
  # LeCun et al. 1998, Sec. III.A)
  c.normalization = "dataset"
  c.synthetic = ml_collections.ConfigDict(dict(
      shape=(32, 32, 3), num_classes=10, num_train=1024, num_test=256, seed=0))

  # Input pipeline: "device" keeps the whole dataset on the accelerator and augments
  # inside the compiled step; "host" streams it from TFDS through tf.data (ImageNet:
  # decode, crop, flip, RandAugment on the CPUs); "auto" picks host for datasets too
  # large to hold in memory.
  c.input_pipeline = "auto"  # auto | device | host
  c.host = ml_collections.ConfigDict(dict(
      shuffle_buffer=16_384,  # examples per process
      prefetch=2))  # global batches in flight on the devices

  # Augmentation and evaluation protocol: the fields of input_pipeline.recipe.Recipe,
  # whose docstring and field comments say what each does (timm's names in brackets).
  # One recipe feeds both input paths; the run prints where each op runs (the plan)
  # and writes it to recipe.json.
  c.augment = ml_collections.ConfigDict(recipe.Recipe().to_dict())

  # Optimisation.
  c.num_epochs = 10
  c.batch_size = 128
  c.eval_batch_size = 512
  c.loss = "cross_entropy"  # cross_entropy | mse (squared error on +-1 targets)
  c.label_smoothing = 0.0
  # LeNet-5's MAP criterion (1998, eq. 9): the cross-entropy gets one more, constant logit
  # -map_j that is never the target (the paper's j; training/losses.py). None: plain.
  c.map_j = config_dict.placeholder(float)
  c.grad_accum_steps = 1  # run each batch as this many micro-batches (big batches, 1 GPU)
  c.ema_decay = 0.0  # moving average of the weights, evaluated too (ConvNeXt 0.9999); 0: off
  c.ema_warmup = False  # decay min(ema_decay, (1 + step) / (10 + step)) (timm's warm-up)
  c.aux_loss_weight = 0.3  # auxiliary classifiers' loss weight (GoogLeNet; paper: 0.3)
  c.optimizer = "sgd"  # sgd | adam | adamw | lamb | rmsprop | sdlm | muon
  c.learning_rate = 0.1
  # Linear scaling rule: learning_rate is for batches of this size, and the rate used is
  # learning_rate * batch_size / lr_base_batch_size. 0: learning_rate as is.
  c.lr_base_batch_size = 0
  c.layer_decay = 0.0  # layer-wise lr decay: layer l gets decay ** (L + 1 - l); 0 = off
  c.momentum = 0.9  # sgd, rmsprop
  c.nesterov = False  # sgd
  c.b1 = 0.9  # adam, adamw
  c.b2 = 0.999
  c.rms_decay = 0.9  # rmsprop: decay of the mean square
  c.eps = 1e-8  # adam, adamw, rmsprop (TF-slim's MobileNet/Inception runs used 1.0)
  c.weight_decay = 0.0  # on kernels only; L2 for sgd/adam/rmsprop, decoupled for adamw/lamb
  c.grad_clip_norm = 0.0  # clip the gradients' global norm to this (0: off; ViT 1.0)
  c.schedule = "cosine"  # constant | step | cosine | linear (to min_learning_rate)
  c.warmup_epochs = 0.0  # linear warm-up from 0
  c.decay_epochs = ()  # step schedule: epochs at which the rate is multiplied by...
  c.decay_factor = 0.1
  c.decay_factors = ()  # or one factor per decay_epochs entry (LeNet-5's schedule)
  # Stochastic diagonal Levenberg-Marquardt (optimizer=sdlm; LeCun et al. 1998, App. C):
  # step learning_rate / (mu + h) per weight, h re-estimated on num_samples patterns
  # before each pass. curvature: "loss" (the training loss's, Gauss-Newton through the whole
  # network) | "rbf_mle" (LeNet-5: the MLE criterion's, 2 per unit of F6, the RBF's input).
  c.sdlm = ml_collections.ConfigDict({"mu": 0.02, "num_samples": 500, "curvature": "loss"})
  # Muon for the convolution filters (optimizer=muon; Jordan 2024, as airbench94_muon),
  # the rest by the SGD fields above: learning_rate is the filters' peak rate (it follows
  # the schedule), beta their momentum, ns_steps the Newton-Schulz iterations; normalize
  # rescales each filter bank to norm sqrt(out channels) every step (airbench94_muon);
  # weight_decay is decoupled (times the rate).
  c.muon = ml_collections.ConfigDict({"learning_rate": 0.05, "beta": 0.95, "nesterov": True,
                                      "ns_steps": 5, "normalize": False,
                                      "weight_decay": 0.0})
  c.min_learning_rate = 0.0  # where cosine and linear end
  # Parameters held fixed: comma-separated patterns (paths, prefixes ending at a "/",
  # or globs whose "*" spans "/"), each optionally ":epochs" it trains first, e.g.
  # "whiten/kernel,whiten/bias:3" (airbench).
  c.freeze = ""
  # With freeze_anneal, a parameter that trains for its first E epochs ("pattern:E" above)
  # does so at a rate falling linearly from the peak to 0 at E, in place of the run's
  # schedule (airbench94_muon's whitening bias: over its own 3 of 8 epochs).
  c.freeze_anneal = False
  # Learning-rate multipliers: comma-separated "pattern:m" ("*" spans "/"), e.g.
  # "*/norm*/bias:64" (airbench94's BatchNorm biases); each parameter named at most once.
  c.lr_mults = ""
  # Weight-decay multipliers, the same way: the parameters named decay at m times
  # weight_decay, biases and norm parameters too (others: kernels at 1, the rest 0), e.g.
  # "*/norm*/bias:12.64" (airbench94_muon's per-group decay). Coupled L2 only: sgd, adam,
  # rmsprop, sdlm and muon's SGD part.
  c.wd_mults = ""
  # The model family's data-dependent init (airbench: the whitening filters from the
  # patches of this many first training images, normalised); 0: off.
  c.data_init_images = 0

  # Bookkeeping.
  c.seed = 0
  c.log_every_steps = 0  # 0: four times per epoch
  c.eval_every_epochs = 1
  c.checkpoint_every_epochs = 1
  # Also save at the first log point after this many minutes since the last save (0:
  # off), so a preempted ImageNet-size run loses minutes, not an epoch. Asynchronous.
  c.checkpoint_every_minutes = 0.0
  c.keep_checkpoints = 3
  # Run the steps between log points in one on-device loop (fast for tiny models at
  # small batches); off: one compiled call per step, since XLA:CPU runs convolutions
  # several times slower inside a loop. Both give the same result.
  c.device_loop = False
  c.stop_after_steps = 0  # stop this run early (then resume), e.g. for time-limited jobs
  # (a, b): a jax.profiler trace of the steps that take the step counter from a to b,
  # written to <workdir>/profile (TensorBoard's profile tab, or XProf); (): off.
  c.profile_steps = ()
  # A workdir holds one experiment: resuming it with another config is an error unless
  # this is set (e.g. to train more epochs); the change is recorded in
  # config_changes.jsonl.
  c.allow_config_change = False
  return c


def convnext_recipe(c: ml_collections.ConfigDict, batch_size: int = 4096,
                    num_epochs: int = 300) -> None:
  """ConvNeXt's ImageNet-1k training recipe (Liu et al. 2022, arXiv 2201.03545, Table 5
  and the official code's defaults), set on ``c`` in place.

  AdamW (0.9, 0.999), lr 4e-3 per 4096 images (linear scaling rule), weight decay 0.05
  on kernels, 20 warm-up epochs (scaled with ``num_epochs``) then cosine to 1e-6, label
  smoothing 0.1, no gradient clipping; random-resized crops (8-100%, 3/4-4/3) with
  bicubic resizing, flips, RandAugment rand-m9-mstd0.5-inc1, Mixup 0.8, CutMix 1.0
  (switch 0.5, every batch), random erasing 0.25 (timm's per-pixel mode), EMA 0.9999,
  stochastic depth 0.1 (the model's ``drop_path_rate``); evaluation at crop 0.875.

  Colour jitter 0.4 is set as the paper lists it, but like timm (whose transform the
  official code uses) it is not applied when RandAugment is on.
  """
  c.num_epochs = num_epochs
  c.batch_size = batch_size
  c.optimizer = "adamw"
  c.learning_rate = 4e-3
  c.lr_base_batch_size = 4096
  c.b1, c.b2, c.eps = 0.9, 0.999, 1e-8
  c.weight_decay = 0.05
  c.grad_clip_norm = 0.0
  c.schedule = "cosine"
  # 20 of 300 epochs, as a reference: --config.num_epochs=N moves the warm-up with it.
  c.warmup_epochs = c.get_ref("num_epochs").to_float() * (20.0 / 300)
  c.min_learning_rate = 1e-6
  c.label_smoothing = 0.1
  c.ema_decay = 0.9999
  c.model_kwargs.drop_path_rate = 0.1
  a = c.augment
  a.inception_crop = True
  a.crop_padding = 0
  a.crop_scale = (0.08, 1.0)
  a.crop_ratio = (3 / 4, 4 / 3)
  a.resize_method = "bicubic"
  a.flip = True
  a.rand_augment = "rand-m9-mstd0.5-inc1"
  a.color_jitter = 0.4
  a.random_erasing = 0.25
  a.erase_mode = "pixel"
  a.mixup = 0.8
  a.cutmix = 1.0
  a.mixup_prob = 1.0
  a.mixup_switch_prob = 0.5
  a.eval_crop_pct = 0.875


def imagenet_sgd(c: ml_collections.ConfigDict, *, batch_size: int, learning_rate: float,
                 weight_decay: float, num_epochs: int, decay_epochs=(),
                 decay_factor: float = 0.1, schedule: str = "step",
                 warmup_epochs: float = 0.0, label_smoothing: float = 0.0,
                 momentum: float = 0.9, eval_batch_size: int = 500,
                 checkpoint_every_epochs: int = 1) -> None:
  """The ImageNet SGD recipe of the classic CNN papers, set on ``c`` in place: SGD with
  momentum (0.9), L2 weight decay on kernels, ``num_epochs`` at ``batch_size``, and a
  step schedule (x``decay_factor`` at each of ``decay_epochs``) or, with
  ``schedule="cosine"``, a cosine decay; optional linear warm-up and label smoothing.
  Evaluation batches of 500 (50,000 validation images in 100 batches)."""
  c.num_epochs = num_epochs
  c.batch_size = batch_size
  c.eval_batch_size = eval_batch_size
  c.optimizer = "sgd"
  c.learning_rate = learning_rate
  c.momentum = momentum
  c.weight_decay = weight_decay
  c.label_smoothing = label_smoothing
  c.schedule = schedule
  c.warmup_epochs = warmup_epochs
  c.decay_epochs = tuple(decay_epochs)
  c.decay_factor = decay_factor
  c.checkpoint_every_epochs = checkpoint_every_epochs


def tf_rmsprop(c: ml_collections.ConfigDict) -> None:
  """TensorFlow's RMSProp as TF-slim ran it for Inception and MobileNets (decay 0.9,
  momentum 0.9, epsilon 1.0), in place of ``c``'s optimizer; the rest of the recipe stays."""
  c.optimizer = "rmsprop"
  c.rms_decay = 0.9
  c.momentum = 0.9
  c.eps = 1.0


def resnet_scale_augmentation(c: ml_collections.ConfigDict) -> None:
  """The ResNet paper's ImageNet augmentation (He et al. 2015, Sec. 3.4), in place: the
  shorter side resized to a side drawn from [256, 480], a random 224 crop, horizontal
  flips, and "the standard color augmentation in [AlexNet]" (PCA lighting, 0.1). The
  ``scale_aug`` variant of the ResNet, SE-ResNet and DenseNet configs."""
  c.augment.inception_crop = False
  c.augment.scale_jitter = (256, 480)
  c.augment.flip = True
  c.augment.lighting = 0.1
  c.augment.color_jitter = 0.0


def shared_file(name: str) -> str:
  """../shared/data/<name>/<name>.npz (or under $SHARED_DIR)."""
  root = os.environ.get("SHARED_DIR", "../shared")
  return os.path.join(root, "data", name, f"{name}.npz")


def shared_npz(name: str) -> str:
  """``npz:`` dataset name for ``shared_file(name)``."""
  return "npz:" + shared_file(name)


def use_tiny_data(c: ml_collections.ConfigDict, shape=(32, 32, 3), num_train: int = 256,
                  num_test: int = 64, num_epochs: int = 2) -> None:
  """The ``tiny`` variant of a config: synthetic images, batch 32, seconds on a CPU (the
  tests run every config this way). The config then shrinks its model.

  The augmentation protocol stays the paper's, at the smaller scale: the pixel sizes
  of scale jittering and dense evaluation shrink with the image (e.g. AlexNet's
  resize-to-256-then-crop-224 becomes 72 and 63 on 63x63 images).
  """
  if c.image_size:
    ratio = shape[0] / c.image_size
    small = lambda sides: tuple(max(shape[0], int(round(s * ratio))) for s in sides)
    if tuple(c.augment.scale_jitter) != (0, 0):
      c.augment.scale_jitter = small(c.augment.scale_jitter)
    c.augment.eval_scales = small(c.augment.eval_scales)
  c.dataset = "synthetic"
  c.image_size = None
  c.synthetic.shape = tuple(shape)
  c.synthetic.num_train = num_train
  c.synthetic.num_test = num_test
  c.augment.flip = False  # synthetic class templates are not mirror-symmetric
  c.num_epochs = num_epochs
  c.batch_size = 32
  c.eval_batch_size = 64


def parse_arg(arg: str | None, **spec: Any) -> dict[str, Any]:
  """``"tiny,res=128"`` -> ``{"tiny": True, "res": 128}`` (big_vision style), checked.

  ``spec`` names every word the config knows and what it takes: ``bool`` (a flag, given
  alone), ``int`` / ``float`` / ``str`` (``word=VALUE``, converted), or a tuple of choices
  (``word=VALUE``, one of them, converted to their type):

    common.parse_arg(arg, depth=(11, 13, 16, 19), bn=bool, tiny=bool)

  Returns the words given, with typed values (absent words are absent: use ``.get``). An
  unknown word (with a "did you mean"), a flag given a value, a value missing, unparsable
  or not among the choices, or a word given twice is a one-line ``ConfigError`` that
  names the word and the valid values.
  """
  for word, kind in spec.items():
    if not (kind in _ARG_TYPES or (isinstance(kind, (tuple, list, range)) and kind)):
      raise TypeError(f"parse_arg: {word}= must be bool, int, float, str or a non-empty "
                      f"tuple of choices, got {kind!r}")
  out: dict[str, Any] = {}
  for item in filter(None, (arg or "").split(",")):
    word, eq, raw = (part.strip() for part in item.partition("="))
    if word not in spec:
      close = difflib.get_close_matches(word, list(spec), n=3)
      hint = f"; did you mean {' or '.join(close)}?" if close else "."
      valid = ", ".join(_arg_usage(w, k) for w, k in spec.items()) or "none"
      raise ConfigError(f"unknown config argument {word!r}{hint} Valid arguments: {valid}")
    if word in out:
      raise ConfigError(f"config argument {word!r} is given twice")
    kind = spec[word]
    if kind is bool:
      if eq:
        raise ConfigError(f"config argument {word!r} is a flag and takes no value (got "
                          f"{word}={raw}); write {word} alone to turn it on, or leave it out")
      out[word] = True
      continue
    if not eq or not raw:
      raise ConfigError(f"config argument {word!r} needs a value: {_arg_usage(word, kind)}")
    out[word] = _arg_value(word, raw, kind)
  return out


_ARG_TYPES = (bool, int, float, str)


def _arg_usage(word: str, kind: Any) -> str:
  """``tiny``, ``depth=11|13|16|19``, ``batch=<int>``."""
  if kind is bool:
    return word
  if kind in _ARG_TYPES:
    return f"{word}=<{kind.__name__}>"
  return f"{word}=" + "|".join(str(c) for c in kind)


def _arg_value(word: str, raw: str, kind: Any) -> Any:
  if kind in _ARG_TYPES:
    try:
      return kind(raw)
    except ValueError:
      article = "an" if kind is int else "a"
      raise ConfigError(f"config argument {word}={raw}: {word} takes {article} "
                        f"{kind.__name__} ({_arg_usage(word, kind)})") from None
  choices = list(kind)
  for choice in choices:  # compare as text, return the choice's own type: "11" -> 11
    if raw == str(choice):
      return choice
  try:  # 16.0 for 16, 1.50 for 1.5
    value = type(choices[0])(raw)
    if value in choices:
      return choices[choices.index(value)]
  except (TypeError, ValueError):
    pass
  close = difflib.get_close_matches(raw, [str(c) for c in choices], n=1)
  hint = f" (did you mean {word}={close[0]}?)" if close else ""
  raise ConfigError(f"config argument {word}={raw} is not valid{hint}: {word} is one of "
                    f"{', '.join(str(c) for c in choices)}")
