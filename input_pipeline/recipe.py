"""The data recipe: one typed object from the config's ``augment`` group, and its plan.

A config says what augmentation and evaluation protocol a run uses, in the
``augment`` group (``configs/common.py``). ``Recipe.from_config`` turns that group
into this frozen dataclass, field for field under the same names; nothing is
copied or renamed by hand on the way. ``plan`` then places each op the recipe asks
for where it can run, in timm's order:

- host: the per-image ops of a streamed dataset whose images vary in size:
  decode, the size-making crop (random-resized, or resize-shorter + random crop),
  flip, and the evaluation resize and crop;
- device: everything else, inside the compiled step, on whole batches: the
  translation crop of fixed-size images, LeNet-5's affine distortions, RandAugment,
  colour jitter, PCA lighting, random erasing, Mixup / CutMix, multi-view
  evaluation, normalisation.

With device-resident data (fixed-size images in memory) every op runs on the
device. The plan is printed before the first step and written to ``recipe.json``;
the step executes exactly the plan's device ops (``augment.apply_ops``) and the
host pipeline exactly its host ops (``host.train_image``), so what is printed is
what runs. An op with nowhere to run, or two ops that contradict each other (two
crops), is a ``RecipeError`` before anything compiles; nothing is dropped or
replaced silently.

The per-paper protocols (``configs/*.py``) are combinations of these fields:

| paper | train | eval |
|---|---|---|
| LeNet-5 (``:distort``) | distort_prob=0.9 (affine distortions) | as is |
| AlexNet | scale_jitter=(256, 256), flip, lighting=0.1 | centre 224 of 256; ten_crop |
| VGG | scale_jitter=(256, 512), flip, lighting=0.1 | centre crop; dense over scales |
| GoogLeNet / BN-Inception | inception_crop (8-100%), flip, color_jitter | centre crop |
| ResNet / SE-ResNet / DenseNet | inception_crop, flip (or scale_jitter=(256, 480) + lighting) | centre crop; ten_crop |
| airbench (speedruns) | crop_padding=2 (reflect), flip | flip (image + mirror) |
| MobileNet, ViT, ConvNeXt | inception_crop, flip, RandAugment, Mixup/CutMix, erasing | centre crop |
"""

from __future__ import annotations

import dataclasses
import json
import math
from typing import Any, Mapping

# AlexNet's "fancy PCA" lighting: the eigenvalues and eigenvectors (columns) of the
# covariance of ImageNet's RGB pixels in [0, 1] units, as fb.resnet.torch and every
# later reproduction use them.
IMAGENET_EIGVAL = (0.2175, 0.0188, 0.0045)
IMAGENET_EIGVEC = ((-0.5675, 0.7192, 0.4009),
                   (-0.5808, -0.0045, -0.8140),
                   (-0.5836, -0.6948, 0.4203))

CROP_MODES = ("constant", "reflect", "edge", "wrap")
FLIP_MODES = ("random", "alternate")
RESIZE_METHODS = ("bilinear", "bicubic")
ERASE_MODES = ("uniform", "pixel")
# The evaluation modes whose views are all taken from the central image_size crop.
CROP_VIEWS = ("center", "flip", "flip_translate", "translate")
EVAL_MODES = ("center", "flip", "flip_translate", "translate", "ten_crop", "dense")
# The evaluation modes that average mirror images in: not a protocol for data whose labels
# a mirror image changes (digits; a dataset's ``flip`` is False).
MIRRORED_EVAL_MODES = ("flip", "flip_translate", "ten_crop", "dense")


# Where each op can run. host: per image, on the CPUs of a streamed dataset (images of
# any size); device: on batches of equal-size images, inside the compiled step.
PLACEMENT = {
    "decode": ("host",),
    "random_resized_crop": ("host", "device"),
    "resize_shorter": ("host", "device"),
    "random_crop": ("host", "device"),
    "center_crop": ("host", "device"),
    "flip": ("host", "device"),
    "alternate_flip": ("device",),  # needs each example's index and the epoch
    "distort": ("device",),  # batched resampling; after a host crop, sizes are fixed
    "translate": ("device",),  # needs fixed-size images
    "rand_augment": ("device",),
    "color_jitter": ("device",),
    "lighting": ("device",),
    "random_erasing": ("device",),
    "normalize": ("device",),
    "mixup_cutmix": ("device",),  # mixes a batch
    "resize_square": ("device",),
    "ten_crop": ("device",),
    "flip_views": ("device",),
    "flip_translate_views": ("device",),
    "translate_views": ("device",),
    "dense": ("device",),  # runs the model
}


class RecipeError(ValueError):
  """A recipe that cannot run as written. The message is one line for the user."""


@dataclasses.dataclass(frozen=True)
class Recipe:
  """The ``augment`` group of a config, typed (timm's names in brackets).

  The defaults here are ``configs/common.base()``'s: that group is built from them.
  """
  # Crops (at most one): a translation of fixed-size images, the random-resized
  # ("Inception") crop, or scale jittering (resize the shorter side, random crop).
  crop_padding: int = 0  # pad each side, random crop back: translation by up to this
  crop_mode: str = "constant"  # constant (zero = background) | reflect | edge | wrap (roll)
  inception_crop: bool = False  # random-resized crop to image_size [RandomResizedCrop]
  crop_scale: tuple[float, float] = (0.08, 1.0)  # its area fraction [scale]
  crop_ratio: tuple[float, float] = (3 / 4, 4 / 3)  # its aspect ratio [ratio]
  # Shorter side resized to an integer drawn uniformly from [min, max] (AlexNet
  # (256, 256), VGG (256, 512), ResNet (256, 480)), then a random image_size crop;
  # (0, 0) = off.
  scale_jitter: tuple[int, int] = (0, 0)
  resize_method: str = "bilinear"  # bilinear | bicubic [interpolation]
  flip: bool = False  # horizontal flip (not for digits) [hflip 0.5]
  # random: each image mirrored with probability 1/2 at each step; alternate (airbench):
  # mirrored by a fixed random choice per image in even epochs and the other way in odd
  # ones, so that any two consecutive epochs show each image both ways (device data only).
  flip_mode: str = "random"
  # LeNet-5's "distorted" training set (LeCun et al. 1998, Sec. III.C): each example,
  # with probability distort_prob (the paper's mix: 0.9; 0 = off), is moved by a
  # random affine map, every magnitude uniform in its range (augment.distort). The
  # paper gives no ranges; these are our reading of its Fig. 13.
  distort_prob: float = 0.0
  distort_translate: float = 2.0  # shift in pixels, each axis, up to this
  distort_scale: float = 0.15  # scale factor in [1 - s, 1 + s]
  distort_squeeze: float = 0.15  # y * k, x / k (area kept), k in [1 - s, 1 + s]
  distort_shear: float = 0.3  # horizontal shear x + h * y, |h| up to this
  # Photometric.
  rand_augment: str = ""  # e.g. "rand-m9-mstd0.5-inc1" (timm's spec); "" = off [aa]
  # brightness = contrast = saturation strength; inactive under RandAugment (as timm,
  # and the plan says so) [color_jitter]
  color_jitter: float = 0.0
  lighting: float = 0.0  # AlexNet's PCA lighting noise, std of alpha (0.1); 0 = off
  # Regularisers on the batch.
  random_erasing: float = 0.0  # probability of erasing a random rectangle [reprob]
  erase_mode: str = "uniform"  # uniform (Zhong et al. 2017) | pixel (timm) [remode]
  mixup: float = 0.0  # Mixup alpha [mixup]
  cutmix: float = 0.0  # CutMix alpha [cutmix]
  mixup_prob: float = 1.0  # probability of mixing a batch [mixup_prob]
  mixup_switch_prob: float = 0.5  # CutMix instead of Mixup when both are on
  # Evaluation: the shorter side resized to floor(image_size / eval_crop_pct) (0: the
  # image as it is on the device; image_size on the host), then
  #   center:   the central image_size crop [crop_pct];
  #   flip:     that crop and its mirror image, softmax averaged (test-time flip
  #             averaging, as airbench and most speedruns evaluate);
  #   flip_translate: six views, softmax averaged: the crop, the crop shifted one pixel
  #             down-right and one pixel up-left (reflect-padded), and the mirror of each
  #             (airbench's tta_level=2 views; airbench weights the logits 1/4 for the
  #             first two and 1/8 for the shifted ones, we average the softmax evenly as
  #             the other modes do);
  #   translate: nine views, softmax averaged: the crop shifted by each offset in
  #             {-1, 0, 1}^2, the border filled as crop_mode fills the training shifts
  #             (for digits and others that must not be mirrored);
  #   ten_crop: AlexNet's 4 corner + centre crops and their flips, softmax averaged;
  #   dense:    VGG's fully convolutional net over the whole (square) image at each
  #             of eval_scales (shorter side, in pixels) and its flip, softmax averaged.
  eval_crop_pct: float = 0.0
  eval_mode: str = "center"
  eval_scales: tuple[int, ...] = ()

  @classmethod
  def from_config(cls, augment: Mapping[str, Any]) -> "Recipe":
    """The recipe of a config's ``augment`` group (a ConfigDict or a dict).

    Raises:
      RecipeError: a field the recipe does not know, or one it needs is missing.
    """
    values = dict(augment.items())
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(values) - set(names))
    if unknown:
      raise RecipeError(f"config.augment has unknown field(s) {', '.join(unknown)}; "
                        f"valid: {', '.join(names)}")
    missing = [n for n in names if n not in values]
    if missing:
      raise RecipeError(f"config.augment lacks {', '.join(missing)}; start the config "
                        "from configs.common.base()")
    for f in dataclasses.fields(cls):
      if isinstance(values[f.name], list):
        values[f.name] = tuple(values[f.name])
    recipe = cls(**values)
    recipe.check()
    return recipe

  def to_dict(self) -> dict[str, Any]:
    return dataclasses.asdict(self)

  # --------------------------------------------------------------------------

  def check(self) -> None:
    """Choices, ranges and combinations that make no sense on any input path."""
    for name, value, options in (("crop_mode", self.crop_mode, CROP_MODES),
                                 ("flip_mode", self.flip_mode, FLIP_MODES),
                                 ("resize_method", self.resize_method, RESIZE_METHODS),
                                 ("erase_mode", self.erase_mode, ERASE_MODES),
                                 ("eval_mode", self.eval_mode, EVAL_MODES)):
      if value not in options:
        raise RecipeError(f"config.augment.{name}={value!r} is not one of "
                          f"{', '.join(options)}")
    if self.flip_mode != "random" and not self.flip:
      raise RecipeError(f"config.augment.flip_mode={self.flip_mode!r} says how to mirror, "
                        "and flip is off; set --config.augment.flip=true or drop flip_mode")
    for name in ("crop_padding", "color_jitter", "lighting", "mixup", "cutmix",
                 "eval_crop_pct", "distort_translate", "distort_shear"):
      if getattr(self, name) < 0:
        raise RecipeError(f"config.augment.{name} must be >= 0, got {getattr(self, name)}")
    for name in ("random_erasing", "mixup_prob", "mixup_switch_prob", "distort_prob"):
      if not 0 <= getattr(self, name) <= 1:
        raise RecipeError(f"config.augment.{name} must be in [0, 1], "
                          f"got {getattr(self, name)}")
    for name in ("distort_scale", "distort_squeeze"):
      if not 0 <= getattr(self, name) < 1:
        raise RecipeError(f"config.augment.{name} is a factor's distance from 1, in "
                          f"[0, 1); got {getattr(self, name)}")
    if self.distort_prob and not any((self.distort_translate, self.distort_scale,
                                      self.distort_squeeze, self.distort_shear)):
      raise RecipeError(f"config.augment.distort_prob={self.distort_prob} with every "
                        "distort_* range 0 distorts nothing; set a range (e.g. "
                        "distort_translate=2) or distort_prob=0")
    if self.eval_crop_pct > 1:
      raise RecipeError("config.augment.eval_crop_pct is the crop's share of the resized "
                        f"image, in (0, 1] (0.875 is standard); got {self.eval_crop_pct}")
    for name in ("crop_scale", "crop_ratio"):
      lo_hi = tuple(getattr(self, name))
      if len(lo_hi) != 2 or not 0 < lo_hi[0] <= lo_hi[1]:
        raise RecipeError(f"config.augment.{name} must be (min, max) with "
                          f"0 < min <= max, got {lo_hi}")
    if self.crop_scale[1] > 1:
      raise RecipeError(f"config.augment.crop_scale is a fraction of the image area, at "
                        f"most 1; got {tuple(self.crop_scale)}")
    jitter = tuple(self.scale_jitter)
    if len(jitter) != 2 or (jitter != (0, 0) and not 0 < jitter[0] <= jitter[1]):
      raise RecipeError(f"config.augment.scale_jitter must be (min, max) shorter sides "
                        f"with 0 < min <= max, or (0, 0) for off; got {jitter}")
    crops = [name for name, on in (
        (f"crop_padding={self.crop_padding} (a translation)", self.crop_padding > 0),
        ("inception_crop=true (a random-resized crop)", self.inception_crop),
        (f"scale_jitter={jitter} (resize + random crop)", self.scale_jitter_on))
             if on]
    if len(crops) > 1:
      raise RecipeError(f"config.augment asks for two crops, {' and '.join(crops)}; keep "
                        "one (e.g. --config.augment.crop_padding=0)")
    if self.rand_augment:
      from input_pipeline import randaugment  # pylint: disable=g-import-not-at-top
      try:
        randaugment.parse(self.rand_augment)
      except ValueError as e:
        raise RecipeError(f"config.augment.rand_augment: {e}") from None
    if self.eval_mode == "dense" and not self.eval_scales:
      raise RecipeError("config.augment.eval_mode='dense' needs eval_scales, the shorter "
                        "sides to evaluate at (VGG: --config.augment.eval_scales=256,384,512)")
    if self.eval_mode == "ten_crop" and not 0 < self.eval_crop_pct < 1:
      raise RecipeError("config.augment.eval_mode='ten_crop' takes its crops from the image "
                        "resized to image_size / eval_crop_pct; set eval_crop_pct in (0, 1) "
                        "(AlexNet: 224 of 256 = 0.875)")
    if self.eval_scales and self.eval_mode != "dense":
      raise RecipeError(f"config.augment.eval_scales={tuple(self.eval_scales)} is used only "
                        "by eval_mode='dense'; set it to () or eval_mode=dense")
    if any(s <= 0 for s in self.eval_scales):
      raise RecipeError(f"config.augment.eval_scales must be positive sides, got "
                        f"{tuple(self.eval_scales)}")

  @property
  def scale_jitter_on(self) -> bool:
    return tuple(self.scale_jitter) != (0, 0)

  @property
  def mixing(self) -> bool:
    return self.mixup_prob > 0 and (self.mixup > 0 or self.cutmix > 0)


@dataclasses.dataclass(frozen=True)
class Op:
  """One step of a plan: a name from ``augment.DEVICE_OPS`` / ``host``'s ops and its
  static arguments (hashable, so a plan can be a static argument of a jitted step)."""
  name: str
  args: tuple[tuple[str, Any], ...] = ()

  @property
  def kwargs(self) -> dict[str, Any]:
    return dict(self.args)

  def __str__(self) -> str:
    def fmt(k, v):
      if k == "sides":  # a range of sides: 256..512, or one side
        return f"{v[0]}..{v[1]}" if v[0] != v[1] else str(v[0])
      if isinstance(v, float):
        return f"{v:.4g}"
      if isinstance(v, tuple):
        return ",".join(fmt("", x) for x in v)
      return str(v)
    # The normalisation statistics are in recipe.json; the log line stays short.
    hidden = ("mean", "std") if self.name in ("normalize", "random_erasing") else ()
    if self.name == "mixup_cutmix":  # many numbers: name them
      return "mixup_cutmix(" + ", ".join(
          f"{k}={fmt(k, v)}" for k, v in self.args if k in ("mixup", "cutmix", "prob")) + ")"
    if self.name == "distort":
      return "distort(" + ", ".join(f"{k}={fmt(k, v)}" for k, v in self.args) + ")"
    shown = [fmt(k, v) for k, v in self.args if k not in hidden]
    return f"{self.name}({', '.join(shown)})" if shown else self.name


def op(name: str, **kwargs) -> Op:
  return Op(name, tuple(kwargs.items()))


@dataclasses.dataclass(frozen=True)
class Plan:
  """Where each op of a recipe runs, for training and for evaluation.

  ``train_host`` / ``eval_host`` are empty for device-resident data. ``eval_views``
  is how many predictions are averaged per test image (1, 10, or 2 per dense scale).
  """
  source: str  # "host" or "device"
  train_host: tuple[Op, ...]
  train_device: tuple[Op, ...]
  eval_host: tuple[Op, ...]
  eval_device: tuple[Op, ...]
  notes: tuple[str, ...] = ()

  def describe(self) -> list[str]:
    """Two lines for the log: the train and the eval op chains."""
    def chain(host, device):
      parts = []
      if host:
        parts.append("host: " + " > ".join(map(str, host)))
      parts.append("device: " + " > ".join(map(str, device)))
      return " | ".join(parts)
    lines = [f"train augmentation: {chain(self.train_host, self.train_device)}",
             f"eval: {chain(self.eval_host, self.eval_device)}"]
    return lines + [f"note: {n}" for n in self.notes]

  def to_json(self, recipe: Recipe) -> str:
    def ops(chain):
      return [{"op": o.name, **{k: v for k, v in o.args}} for o in chain]
    return json.dumps({
        "source": self.source,
        "train": {"host": ops(self.train_host), "device": ops(self.train_device)},
        "eval": {"host": ops(self.eval_host), "device": ops(self.eval_device)},
        "notes": list(self.notes), "recipe": recipe.to_dict()}, indent=2)

  def op_names(self, which: str = "train") -> list[str]:
    host, device = ((self.train_host, self.train_device) if which == "train"
                    else (self.eval_host, self.eval_device))
    return [o.name for o in host + device]


def plan(recipe: Recipe, *, source: str, image_size: int, channels: int,
         stored_size: int | None = None, mean: tuple[float, ...] = (0.0,),
         std: tuple[float, ...] = (1.0,), num_classes: int = 0,
         label_smoothing: float = 0.0, dense_eval: bool = False) -> Plan:
  """Places the recipe's ops.

  Args:
    recipe: the run's recipe.
    source: "host" (a streamed dataset of variable-size images) or "device"
      (fixed-size images in accelerator memory).
    image_size: side of the images the model sees.
    channels: image channels.
    stored_size: device source: side of the stored images (== image_size).
    mean, std: per-channel normalisation, in [0, 1] units.
    num_classes: for Mixup / CutMix targets.
    label_smoothing: for Mixup / CutMix targets.
    dense_eval: whether the model can run fully convolutionally (eval_mode='dense').

  Raises:
    RecipeError: an op with nowhere to run on this source, or that cannot apply to
      these images.
  """
  if source not in ("host", "device"):
    raise ValueError(f"source must be 'host' or 'device', got {source!r}")
  r = recipe
  host = source == "host"
  size = image_size
  notes = []
  train_host, train_device = [], []
  # Where the crop and the flip run: on the host for streamed images of any size.
  crop_ops = train_host if host else train_device
  if host:
    train_host.append(op("decode"))
  if r.crop_padding:
    if host:
      raise RecipeError(
          f"config.augment.crop_padding={r.crop_padding} translates fixed-size images, "
          "and the host pipeline's images vary in size; use a crop that makes them "
          "image_size (--config.augment.inception_crop=true or scale_jitter=256,256) "
          "and crop_padding=0")
    train_device.append(op("translate", padding=r.crop_padding, mode=r.crop_mode))
  elif r.inception_crop:
    crop_ops.append(op("random_resized_crop", size=size, scale=tuple(r.crop_scale),
                       ratio=tuple(r.crop_ratio), method=r.resize_method))
  elif r.scale_jitter_on:
    lo, hi = (int(v) for v in r.scale_jitter)
    if lo < size:
      raise RecipeError(f"config.augment.scale_jitter={(lo, hi)} resizes the shorter side "
                        f"below the {size}-pixel crop; use a minimum of at least {size}")
    crop_ops.append(op("resize_shorter", sides=(lo, hi), method=r.resize_method))
    crop_ops.append(op("random_crop", size=size))
  elif host:
    raise RecipeError(
        "the host pipeline needs a crop that makes its variable-size images "
        f"{size}x{size}: set --config.augment.inception_crop=true or "
        "--config.augment.scale_jitter=256,256 (or use --config.input_pipeline=device)")
  if r.flip and r.flip_mode == "alternate":
    if host:
      raise RecipeError("config.augment.flip_mode='alternate' mirrors each image by its "
                        "index and the epoch, which the host pipeline does not track; use "
                        "flip_mode=random or --config.input_pipeline=device")
    train_device.append(op("alternate_flip"))
  elif r.flip:
    crop_ops.append(op("flip"))
  if r.distort_prob:
    train_device.append(op("distort", prob=float(r.distort_prob),
                           translate=float(r.distort_translate),
                           scale=float(r.distort_scale), squeeze=float(r.distort_squeeze),
                           shear=float(r.distort_shear)))
  if r.rand_augment:
    train_device.append(op("rand_augment", spec=r.rand_augment))
    if r.color_jitter:
      notes.append(f"color_jitter={r.color_jitter:g} is inactive under RandAugment, as in "
                   "timm's transform (the paper lists both)")
  elif r.color_jitter:
    train_device.append(op("color_jitter", strength=float(r.color_jitter)))
  if r.lighting:
    if channels != 3:
      raise RecipeError(f"config.augment.lighting={r.lighting:g} is PCA noise along "
                        f"ImageNet's RGB eigenvectors; these images have {channels} "
                        "channel(s): set it to 0")
    train_device.append(op("lighting", std=float(r.lighting)))
  if r.random_erasing:
    train_device.append(op("random_erasing", prob=float(r.random_erasing),
                           mode=r.erase_mode, mean=tuple(mean), std=tuple(std)))
  train_device.append(op("normalize", mean=tuple(mean), std=tuple(std)))
  if r.mixing:
    train_device.append(op("mixup_cutmix", mixup=float(r.mixup), cutmix=float(r.cutmix),
                           prob=float(r.mixup_prob), switch_prob=float(r.mixup_switch_prob),
                           num_classes=num_classes, label_smoothing=float(label_smoothing)))

  # Evaluation.
  eval_host, eval_device = [], []
  resized = math.floor(size / r.eval_crop_pct) if r.eval_crop_pct else size
  if r.eval_mode == "dense":
    if not dense_eval:
      raise RecipeError("config.augment.eval_mode='dense' runs the classifier fully "
                        "convolutionally, which this model does not (VGG does); use "
                        "eval_mode=center or ten_crop")
    resized = max(max(r.eval_scales), size)
  if host:
    eval_host.append(op("decode"))
    eval_host.append(op("resize_shorter", sides=(resized, resized), method=r.resize_method))
    # The host ships the centre square the device's views are taken from.
    eval_host.append(op("center_crop", size=size if r.eval_mode in CROP_VIEWS
                        else resized))
  elif r.eval_mode in CROP_VIEWS:
    if r.eval_crop_pct and resized != size:
      eval_device.append(op("center_crop", size=size, crop_pct=float(r.eval_crop_pct),
                            method=r.resize_method))
  elif r.eval_mode == "ten_crop" and resized != stored_size:
    eval_device.append(op("resize_square", size=resized, method=r.resize_method))
  if r.eval_mode == "ten_crop":
    eval_device.append(op("ten_crop", size=size))
  if r.eval_mode == "flip":
    eval_device.append(op("flip_views"))
  if r.eval_mode == "flip_translate":
    eval_device.append(op("flip_translate_views"))
  if r.eval_mode == "translate":
    eval_device.append(op("translate_views", mode=r.crop_mode))
  eval_device.append(op("normalize", mean=tuple(mean), std=tuple(std)))
  if r.eval_mode == "dense":
    eval_device.append(op("dense", scales=tuple(int(s) for s in r.eval_scales),
                          method=r.resize_method))
  for where, chain in (("host", train_host + eval_host),
                      ("device", train_device + eval_device)):
    for o in chain:
      assert where in PLACEMENT[o.name], f"{o.name} placed on the {where}"
  return Plan(source=source, train_host=tuple(train_host),
              train_device=tuple(train_device), eval_host=tuple(eval_host),
              eval_device=tuple(eval_device), notes=tuple(notes))
