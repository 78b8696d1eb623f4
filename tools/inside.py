r"""See inside the networks: filters, feature maps, receptive fields, shift equivariance,
the sliding window and the timeline of the zoo, as PNGs with the numbers behind them
as JSON.

  python tools/inside.py filters  --checkpoint runs/l89 --checkpoint runs/lenet5
  python tools/inside.py features --checkpoint runs/lenet5 --layer C3 --image 7
  python tools/inside.py rf       --checkpoint runs/r20       # trained beside untrained
  python tools/inside.py shift    --checkpoint runs/l89 --checkpoint runs/lenet5 --max_shift 8
  python tools/inside.py strip    --checkpoint runs/lenet5_background --digits 5 --width 128
  python tools/inside.py dead     --checkpoint runs/vgg_bn --images 500  # never-positive units
  python tools/inside.py timeline                             # ../shared/REFERENCE.md
  python tools/inside.py filters  --config configs/vgg.py:tiny  # at initialisation
  python tools/inside.py filters  --model resnet50             # its canonical input

Each network is a train.py workdir (``--checkpoint``: its latest checkpoint, its
``config.json`` for the model and the data), a config at initialisation (``--config``),
or a registered model at initialisation on its canonical input (``--model``; random
images unless ``--dataset`` names data). ``--checkpoint`` and ``--config`` repeat, one
panel per network, in the order given. With ``--model`` as well, every checkpoint must
be of that model. Test images are the dataset's first test images, normalised as the
run normalised them. Layer names are module paths, as ``tools/model_report.py
--layers`` prints them. Output: ``--output`` (default ``docs/inspect/<what>.png``) and
the same path with ``.json``. Bad input (an unknown layer, a checkpoint of another
model, a missing workdir) is one line, ``error: ...``, and exit status 2.

The measures are the pure functions below; the CLI only loads, calls and draws:

* ``effective_rf``: Luo et al. 2016, "Understanding the effective receptive field in
  deep convolutional neural networks": the gradient of one centre output unit (all its
  channels) with respect to the input, its magnitude averaged over images and input
  channels. The theoretical field (``analysis/``) is drawn as a square centred
  on the gradient's support.
* ``shift_equivariance``: the input moved right by s = 0..k pixels, the background
  (its left column's values) filling in (``circular=True``: rolled); a layer whose
  positions are J input pixels apart (its jump) should then hold its maps moved by
  s/J, interpolated linearly between the two neighbouring integer rolls when s/J is
  fractional. The measure is the cosine similarity between the shifted input's maps
  and the shifted maps, per image, averaged, over the map columns that the roll did not
  wrap around (all but the first ceil(s/J)); layers without a spatial axis are
  compared unshifted (invariance). After a stride-2 layer an odd input shift is a
  half-position shift, which no shift of the maps reproduces: the measure drops at odd
  shifts and recovers at even ones.
* ``column_scores``: a fully convolutional network over a strip; column k of its output
  sees the window ``column_window(k)``.
* ``never_positive``: per layer, the fraction of its units (channels) whose output is
  <= 0 at every position of every test image. Where a ReLU follows the layer these are
  dead units: they pass nothing forward and get no gradient, so training cannot revive
  them. (For a layer without a ReLU after it the number is only a sign statistic.)
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import re
import sys
from typing import Any, Callable, Sequence

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
  sys.path.insert(0, ROOT)

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import ml_collections  # noqa: E402
import numpy as np  # noqa: E402

import analysis  # noqa: E402
import models  # noqa: E402
from tools import model_report  # noqa: E402
from training import cli  # noqa: E402

WHATS = ("filters", "features", "rf", "shift", "strip", "timeline", "dead")
REFERENCE = os.path.join(os.environ.get("SHARED_DIR", os.path.join(ROOT, "..", "shared")),
                         "REFERENCE.md")


class InsideError(ValueError):
  """Bad input; the message is one line that names the problem and the fix."""


# ------------------------------------------------------------------------ the networks


@dataclasses.dataclass
class Net:
  """One network to look into: the module, its variables and where they came from."""
  label: str  # "lenet5 (trained: runs/l5)"
  name: str  # the registered model name
  model: Any
  variables: Any
  config: ml_collections.ConfigDict | None  # the run's or the given config; None: --model
  input_shape: tuple[int, int, int]  # (H, W, C)
  trained: bool

  def report(self) -> analysis.Report:
    """The model report's layers and fields at the network's input (traced once)."""
    if not hasattr(self, "_report"):
      self._report = analysis.analyze(self.model, (1, *self.input_shape))
    return self._report

  def untrained(self, seed: int = 0) -> "Net":
    """The same network at initialisation."""
    return dataclasses.replace(
        self, label=f"{self.name} (initialisation)", trained=False,
        variables=init_variables(self.model, self.input_shape, seed))


def init_variables(model, input_shape: Sequence[int], seed: int = 0) -> Any:
  x = jnp.zeros((1, *input_shape), jnp.float32)
  return jax.jit(lambda k: model.init(k, x, train=False))(jax.random.key(seed))


def _same_shapes(model, input_shape, variables) -> str | None:
  """None if ``variables`` fit ``model``, else the first difference, in words."""
  x = jax.ShapeDtypeStruct((1, *input_shape), jnp.float32)
  fresh = jax.eval_shape(lambda x: model.init(jax.random.key(0), x, train=False), x)
  want = {jax.tree_util.keystr(p): tuple(v.shape)
          for p, v in jax.tree_util.tree_leaves_with_path(fresh.get("params", {}))}
  have = {jax.tree_util.keystr(p): tuple(np.shape(v))
          for p, v in jax.tree_util.tree_leaves_with_path(variables.get("params", {}))}
  for key in sorted(set(want) | set(have)):
    if want.get(key) != have.get(key):
      return f"params{key} is {have.get(key)} in the checkpoint, {want.get(key)} in the model"
  return None


def _model_for(config: ml_collections.ConfigDict) -> tuple[Any, tuple[int, int, int]]:
  from training import config as config_lib  # pylint: disable=g-import-not-at-top
  image_shape, num_classes = config_lib.data_shape(config)
  kwargs = config.model_kwargs.to_dict() if "model_kwargs" in config else {}
  try:
    model = models.create_model(config.model, num_classes=num_classes, **kwargs)
  except TypeError as e:
    raise InsideError(f"model_kwargs: {str(e).splitlines()[0]}") from None
  return model, tuple(image_shape)


def load_checkpoint(workdir: str, model_name: str | None = None) -> Net:
  """The network of a train.py workdir, at its latest checkpoint."""
  from training import pretrained  # pylint: disable=g-import-not-at-top
  try:
    variables, config = pretrained.load_trained(workdir)
  except pretrained.PretrainedError as e:
    raise InsideError(str(e)) from None
  if config is None:
    raise InsideError(f"{workdir} has no config.json: --checkpoint takes a train.py workdir")
  if model_name and config["model"] != model_name:
    raise InsideError(f"{workdir} is a checkpoint of {config['model']!r}, not --model "
                      f"{model_name!r}")
  config = ml_collections.ConfigDict(config)
  model, shape = _model_for(config)
  if (diff := _same_shapes(model, shape, variables)) is not None:
    raise InsideError(f"{workdir}'s checkpoint does not fit {config.model} as its "
                      f"config.json builds it: {diff}")
  return Net(f"{config.model} (trained: {os.path.basename(os.path.normpath(workdir))})",
             config.model, model, variables, config, shape, True)


def load_config(spec: str, seed: int = 0) -> Net:
  """The network of a config file (``path.py[:arg]``), at initialisation."""
  from training import config as config_lib  # pylint: disable=g-import-not-at-top
  try:
    config = config_lib.load_config(spec)
  except config_lib.ConfigError as e:
    raise InsideError(str(e)) from None
  model, shape = _model_for(config)
  return Net(f"{config.model} (initialisation)", config.model, model,
             init_variables(model, shape, seed), config, shape, False)


def load_model(name: str, seed: int = 0) -> Net:
  """A registered model at initialisation, on its canonical input."""
  size, channels, classes = model_report.canonical_input(name)
  model = models.create_model(name, num_classes=classes)
  shape = (size, size, channels)
  return Net(f"{name} (initialisation)", name, model, init_variables(model, shape, seed),
             None, shape, False)


def test_images(net: Net, count: int, dataset: str | None = None,
                first: int = 0) -> tuple[np.ndarray, np.ndarray | None]:
  """``(images, labels)``: test images ``first..first+count-1`` of the network's data
  (or ``dataset``), normalised as its run normalised them; random images (and no labels)
  for a bare ``--model`` without ``dataset``."""
  if net.config is None and dataset is None:
    x = jax.random.normal(jax.random.key(first), (count, *net.input_shape))
    return np.asarray(x), None
  from configs import common  # pylint: disable=g-import-not-at-top
  from training import data  # pylint: disable=g-import-not-at-top
  import input_pipeline  # pylint: disable=g-import-not-at-top
  config = ml_collections.ConfigDict(net.config or common.base())
  if dataset is not None:
    config.dataset = dataset
  try:
    ds = data.load_in_memory(config)
  except input_pipeline.DatasetError as e:
    raise InsideError(str(e)) from None
  if tuple(ds.image_shape) != tuple(net.input_shape):
    raise InsideError(f"{config.dataset} has {ds.image_shape} images; {net.name} takes "
                      f"{net.input_shape} (set the run's image_size/pad)")
  mean, std = data.normalization_stats(config, ds)
  x = ds.test_images[first:first + count]
  return (np.asarray(input_pipeline.normalize(x, mean, std)),
          ds.test_labels[first:first + count])


# -------------------------------------------------------------------- the measurements


def first_conv_kernel(net: Net) -> tuple[str, np.ndarray]:
  """``(path, kernel)`` of the first convolution: (kh, kw, in, out)."""
  for layer in net.report().layers:
    if layer.op.startswith("conv") and layer.path:
      node = net.variables["params"]
      for part in layer.path.split("/"):
        node = node[part]
      kernel = np.asarray(node["kernel"])
      if kernel.ndim == 4:
        return layer.path, kernel
  raise InsideError(f"{net.name} has no convolution with a (kh, kw, in, out) kernel")


def filter_tiles(kernel: np.ndarray) -> np.ndarray:
  """(out, kh, kw, 1 or 3) tiles in [0, 1], each filter stretched to its own range
  (per-filter contrast); RGB for 3 input channels, else the mean over them in grey."""
  k = np.moveaxis(kernel, -1, 0)  # (out, kh, kw, in)
  if k.shape[-1] != 3:
    k = k.mean(-1, keepdims=True)
  lo = k.min(axis=(1, 2, 3), keepdims=True)
  hi = k.max(axis=(1, 2, 3), keepdims=True)
  return (k - lo) / np.maximum(hi - lo, 1e-12)


def capture(net: Net, x: jax.Array) -> dict[str, jax.Array]:
  """Every submodule's output on ``x``, by module path ("stage1_block1/conv1"), in the
  order the modules are called (program order)."""
  calls = []

  def keep(module, method):
    if method == "__call__":
      calls.append("/".join(module.path))
    return method == "__call__"

  _, state = net.model.apply(net.variables, x, train=False, mutable=["intermediates"],
                             capture_intermediates=keep)
  out = {}
  for path, value in jax.tree_util.tree_flatten_with_path(
      state["intermediates"], is_leaf=lambda v: isinstance(v, tuple))[0]:
    keys = [k.key for k in path if hasattr(k, "key")]
    if keys[-1] == "__call__" and len(keys) > 1 and isinstance(value, tuple):
      if isinstance(value[-1], jax.Array):
        out["/".join(keys[:-1])] = value[-1]
  order = [c for c in dict.fromkeys(calls) if c in out]
  return {k: out[k] for k in order + [k for k in out if k not in order]}


def spatial_layers(report: analysis.Report) -> dict[str, analysis.Layer]:
  """The named layers with (N, H, W, C) outputs, in program order, by module path."""
  out = {}
  for layer in report.layers:
    if layer.path and len(layer.shape) == 4 and isinstance(layer.field, analysis.Field):
      out[layer.path] = layer
  return out


def check_layers(net: Net, names: Sequence[str]) -> None:
  known = spatial_layers(net.report())
  for name in names:
    if name not in known:
      raise InsideError(f"{net.name} has no layer {name!r} with feature maps; its layers "
                        f"(tools/model_report.py --layers): {', '.join(known)}")


def effective_rfs(fn: Callable[[jax.Array], dict[str, jax.Array]],
                  x: jax.Array) -> dict[str, np.ndarray]:
  """Per named map of ``fn`` (images (N, H, W, C) -> {name: (N, h, w, c)}): |d (sum of
  the centre unit's channels) / d input|, averaged over the images and the input
  channels, an (H, W) map; the centre unit is (h // 2, w // 2). One compiled program
  for all the maps."""
  names = list(jax.eval_shape(fn, jax.ShapeDtypeStruct(np.shape(x), jnp.float32)))

  def maps(x):
    out = {}
    for name in names:
      def centre(x, name=name):
        y = fn(x)[name]
        return jnp.sum(y[:, y.shape[1] // 2, y.shape[2] // 2, :])
      out[name] = jnp.mean(jnp.abs(jax.grad(centre)(x)), axis=(0, 3))
    return out
  return {k: np.asarray(v) for k, v in jax.jit(maps)(jnp.asarray(x, jnp.float32)).items()}


def effective_rf(fn: Callable[[jax.Array], jax.Array], x: jax.Array) -> np.ndarray:
  """``effective_rfs`` of one map: ``fn`` maps images to (N, h, w, c) feature maps."""
  return effective_rfs(lambda v: {"map": fn(v)}, x)["map"]


def support(erf: np.ndarray, rel: float = 1e-6) -> tuple[int, int, int, int]:
  """(top, left, height, width) of the bounding box of the map's non-zero values."""
  rows = np.flatnonzero(erf.max(1) > rel * erf.max())
  cols = np.flatnonzero(erf.max(0) > rel * erf.max())
  return int(rows[0]), int(cols[0]), int(rows[-1] - rows[0] + 1), int(cols[-1] - cols[0] + 1)


def mass_width(erf: np.ndarray, mass: float = 0.95) -> tuple[int, int]:
  """(height, width) of the central interval of each axis's marginal that holds ``mass``
  of the gradient's total: the effective field's extent."""
  out = []
  for axis in (1, 0):
    m = erf.sum(axis) / erf.sum()
    c = np.cumsum(m)
    lo = int(np.searchsorted(c, (1 - mass) / 2))
    hi = int(np.searchsorted(c, 1 - (1 - mass) / 2))
    out.append(hi - lo + 1)
  return tuple(out)


def frac_roll(y: jax.Array, shift, axis: int) -> jax.Array:
  """``y`` rolled by a possibly fractional (and traced) ``shift`` along ``axis``: linear
  interpolation between the two neighbouring integer rolls."""
  lo = jnp.floor(shift)
  a = shift - lo
  lo = lo.astype(jnp.int32)
  return (1 - a) * jnp.roll(y, lo, axis) + a * jnp.roll(y, lo + 1, axis)


def cosine(a: jax.Array, b: jax.Array) -> jax.Array:
  """Per-example cosine similarity of two batches, flattened."""
  a = a.reshape(a.shape[0], -1)
  b = b.reshape(b.shape[0], -1)
  return jnp.sum(a * b, -1) / jnp.maximum(
      jnp.linalg.norm(a, axis=-1) * jnp.linalg.norm(b, axis=-1), 1e-12)


def shift_right(x: jax.Array, s, circular: bool = False) -> jax.Array:
  """Images (N, H, W, C) moved ``s`` pixels right (``s`` may be traced): rolled, or with
  the left column repeated into the gap (the background, for digits)."""
  if circular:
    return jnp.roll(x, s, axis=2)
  return x[:, :, jnp.maximum(jnp.arange(x.shape[2]) - s, 0)]


def shift_equivariance(features: Callable[[jax.Array], dict[str, jax.Array]],
                       jumps: dict[str, int | None], x: jax.Array, max_shift: int,
                       logits: Callable[[jax.Array], jax.Array] | None = None,
                       circular: bool = False) -> dict[str, list[float]]:
  """For s = 0..max_shift: per layer, the mean cosine similarity between the maps of the
  input shifted right by s (``shift_right``) and the maps rolled by s / jump, over the
  columns the roll did not wrap (None: unrolled, for layers without a spatial axis);
  with ``logits``, under "same class", the fraction of images whose predicted class
  does not change. One compiled program, run once per shift."""
  @jax.jit
  def measure(x, s):  # one compiled program: the unshifted maps are recomputed per shift
    base = features(x)
    xs = shift_right(x, s, circular)
    moved = features(xs)
    out = {}
    for name, jump in jumps.items():
      a, b = moved[name], base[name]
      if jump is not None:
        # The first ceil(s / jump) columns wrapped around: masked out, as if sliced.
        keep = (jnp.arange(a.shape[2]) >= jnp.ceil(s / jump))[None, None, :, None]
        a, b = a * keep, frac_roll(b, s / jump, axis=2) * keep
      out[name] = jnp.mean(cosine(a, b))
    if logits is not None:
      out["same class"] = jnp.mean(jnp.argmax(logits(xs), -1) == jnp.argmax(logits(x), -1))
    return out

  x = jnp.asarray(x, jnp.float32)
  rows = [jax.device_get(measure(x, jnp.int32(s))) for s in range(max_shift + 1)]
  names = list(jumps) + ([] if logits is None else ["same class"])  # jit sorts dict keys
  return {name: [float(r[name]) for r in rows] for name in names}


def never_positive(maps: dict[str, jax.Array]) -> dict[str, float]:
  """Per layer (``capture``'s output), the fraction of its channels that are <= 0 at
  every position of every image: a following ReLU's dead units."""
  out = {}
  for name, y in maps.items():
    y = np.asarray(y)
    if y.ndim < 2:
      continue
    live = np.any(y.reshape(-1, y.shape[-1]) > 0, axis=0)
    out[name] = float(1.0 - live.mean())
  return out


def column_window(k: int, jump: int, field: int) -> tuple[int, int]:
  """The input columns [start, stop) that output column ``k`` of a VALID network sees."""
  return k * jump, k * jump + field


def column_scores(net: Net, strip: jax.Array) -> np.ndarray:
  """(columns, classes) softmax scores of a fully convolutional network run over one
  strip (H, W, C), one column per output position."""
  y = jax.jit(lambda v, x: net.model.apply(v, x, train=False))(
      net.variables, jnp.asarray(strip, jnp.float32)[None])
  if y.ndim == 2:  # the strip was exactly one window
    y = y[:, None, None]
  return np.asarray(jax.nn.softmax(y[0, 0], -1))


def compose_strip(digits: np.ndarray, width: int, gap: int = 3,
                  grid: tuple[int, int, int] | None = None) -> tuple[np.ndarray, list[int]]:
  """Digits (N, H, W, C) side by side on a (H, width, C) background: each cropped to its
  inked columns, ``gap`` pixels apart, the row centred. With ``grid=(first, step,
  last)`` (the output columns' window centres, ``first + k * step <= last``), each
  digit's centre column falls on a window centre instead: the digits one pitch apart,
  the smallest multiple of ``step`` that keeps ``gap`` between the widest two, the row
  centred on the grid. Returns the strip and the centre column of each digit. Raises if
  they do not fit."""
  pieces = []
  for d in digits:
    cols = np.flatnonzero(d.max(axis=(0, 2)) > 0)
    pieces.append(d[:, cols[0]:cols[-1] + 1] if cols.size else d[:, :1])
  widths = [p.shape[1] for p in pieces]
  if grid is None:
    total = sum(widths) + gap * (len(pieces) - 1)
    x = (width - total) // 2
    starts = []
    for w in widths:
      starts.append(x)
      x += w + gap
  else:
    first, step, last = grid
    pitch = step * math.ceil((max(widths) + gap) / step)
    total = (len(pieces) - 1) * pitch  # from the first centre to the last
    free = (last - first - total) // step  # grid steps left over
    centres = [first + step * (free // 2) + i * pitch for i in range(len(pieces))]
    starts = [c - w // 2 for c, w in zip(centres, widths)]
    if free < 0:
      starts = [-1]  # refused below
  if min(starts) < 0 or max(s + w for s, w in zip(starts, widths)) > width:
    need = (sum(widths) + gap * (len(pieces) - 1) if grid is None else
            total + width - (last - first))
    raise InsideError(f"{len(pieces)} digits need {need} columns; the strip has {width}")
  strip = np.zeros((digits.shape[1], width, digits.shape[3]), digits.dtype)
  for x, p in zip(starts, pieces):
    strip[:, x:x + p.shape[1]] = p
  return strip, [x + w // 2 for x, w in zip(starts, widths)]


# -------------------------------------------------------------------------- the timeline

# REFERENCE.md's table rows (by the start of their model cell) -> our model names, one
# per value of the row's " / "-separated columns; the year where the row has none.
TIMELINE_ROWS = (
    ("LeNet-1989", ("lenet1989",), None),
    ("LeNet-5", ("lenet5",), None),
    # The 2012 network's top-1, as torchvision's single-tower variant measures it (the
    # paper gives top-5 only): drawn at 2012, where the familiar chart puts AlexNet.
    ("AlexNet, torchvision", ("alexnet_torchvision",), 2012),
    ("VGG-11 / 13 / 16 / 19", ("vgg11", "vgg13", "vgg16", "vgg19"), None),
    ("VGG-11/13/16/19 with BN", ("vgg11_bn", "vgg13_bn", "vgg16_bn", "vgg19_bn"), None),
    ("GoogLeNet", ("googlenet",), None),
    ("ResNet-18 / 34", ("resnet18", "resnet34", "resnet50", "resnet101", "resnet152"), None),
    ("ResNet CIFAR", ("resnet20", "resnet32", "resnet44", "resnet56", "resnet110"), None),
    ("DenseNet-121", ("densenet121", "densenet169", "densenet201"), None),
    ("SE-ResNet-50", ("se_resnet50",), None),
    ("MobileNet v1", ("mobilenet_v1",), None),
    ("MobileNetV2", ("mobilenet_v2",), None),
    ("ViT-B/16", ("vit_b16",), None),
    ("ConvNeXt-T", ("convnext_t", "convnext_s", "convnext_b", "convnext_l"), None),
)

# This codebase's own measured accuracies (README, "Results": the runs and commands are
# there), on the datasets these small networks were trained on.
MEASURED = (
    ("lenet1989", "USPS", 94.85),  # the paper's SDLM (:usps,sdlm), mean of 3 seeds
    ("lenet5", "MNIST", 99.23),  # the paper's SDLM per pattern (:per_pattern), mean of 3
    ("lenet5_modern", "MNIST", 99.55),
    ("resnet20", "Fashion-MNIST", 94.20),
)


def _number(text: str) -> float | None:
  """The first number of a cell part: "0.27M" -> 270000, "69.78 (torchvision)" -> 69.78."""
  m = re.search(r"(\d[\d,]*(?:\.\d+)?)\s*([MK]?)", text)
  if not m:
    return None
  value = float(m.group(1).replace(",", ""))
  return value * {"M": 1e6, "K": 1e3, "": 1}[m.group(2)]


def read_reference(text: str) -> list[dict]:
  """One record per model of ``TIMELINE_ROWS`` from REFERENCE.md's model table: name,
  year, params, GMACs at 224 and ImageNet top-1 (None where the row has none)."""
  out = []
  for line in text.splitlines():
    cells = [c.strip() for c in line.strip().strip("|").split("|")]
    if len(cells) != 5:
      continue
    for start, names, year in TIMELINE_ROWS:
      if not cells[0].startswith(start):
        continue
      year = year or _number(cells[1])
      columns = []
      for cell in cells[2:]:
        parts = cell.split(";")[0].split(" / ") if cell and cell != "same" else []
        columns.append([_number(p) for p in parts])
      params, gmacs, top1 = columns
      if cells[3] == "same":  # "same" as the row above (VGG with BN)
        gmacs = list(out[-1]["gmacs_list"])
      first = cells[4].split(";")[0]
      if not first[:1].isdigit() or "%" in first:
        top1 = []  # a top-5 error, or another dataset's error: no ImageNet top-1
      for i, name in enumerate(names):
        pick = lambda values: values[i] if i < len(values) else None
        out.append({"model": name, "year": int(year), "params": pick(params),
                    "gmacs": pick(gmacs) if "MACs" not in cells[3] else None,
                    "top1": pick(top1), "gmacs_list": gmacs})
  for record in out:
    del record["gmacs_list"]
  return out


# ----------------------------------------------------------------------------- drawing


def _plt():
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  return plt


def _grid(tiles: np.ndarray, cols: int, pad: int = 1) -> np.ndarray:
  """Tiles (n, h, w, c) in [0, 1] laid out ``cols`` per row on a white background."""
  n, h, w, c = tiles.shape
  rows = -(-n // cols)
  out = np.full((rows * (h + pad) - pad, cols * (w + pad) - pad, c), np.nan)
  for i, t in enumerate(tiles):
    r, q = divmod(i, cols)
    out[r * (h + pad):r * (h + pad) + h, q * (w + pad):q * (w + pad) + w] = t
  return np.nan_to_num(out, nan=1.0) if c == 3 else out[..., 0]  # grey: NaN = blank


def _save(fig, path: str) -> None:
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  fig.savefig(path, dpi=90, bbox_inches="tight")
  _plt().close(fig)


def _sig(a, digits: int = 3) -> list:
  """``a`` as nested lists of floats to ``digits`` significant digits (small JSON)."""
  return np.vectorize(lambda v: float(f"{v:.{digits}g}"), otypes=[float])(
      np.asarray(a, np.float64)).tolist()


def _evenly(items: list, most: int) -> list:
  """At most ``most`` items, evenly spaced, the first and last kept."""
  if len(items) <= most:
    return items
  return [items[round(i * (len(items) - 1) / (most - 1))] for i in range(most)]


# ---------------------------------------------------------------------------- commands


def run_filters(nets: list[Net], args) -> dict:
  plt = _plt()
  fig, axes = plt.subplots(1, len(nets), figsize=(3.2 * len(nets), 3.4), squeeze=False)
  out = {}
  for ax, net in zip(axes[0], nets):
    path, kernel = first_conv_kernel(net)
    tiles = filter_tiles(kernel)
    ax.imshow(_grid(tiles, math.ceil(math.sqrt(len(tiles)))), cmap="gray",
              interpolation="nearest")
    ax.set_title(f"{net.label}\n{path}: {kernel.shape[-1]} x {kernel.shape[0]}x"
                 f"{kernel.shape[1]}x{kernel.shape[2]}", fontsize=8)
    ax.axis("off")
    out[net.label] = {"layer": path, "shape": list(kernel.shape),
                      "kernel": np.round(kernel, 5).tolist()}
  fig.suptitle("First-layer filters (each stretched to its own range)", fontsize=9)
  _save(fig, args.output)
  return out


def default_layer(net: Net) -> str:
  """The second named layer with feature maps (the first is often too literal)."""
  names = list(spatial_layers(net.report()))
  return names[min(1, len(names) - 1)]


def run_features(nets: list[Net], args) -> dict:
  layers = args.layer or [default_layer(n) for n in nets]
  if len(layers) != len(nets):
    raise InsideError(f"--layer is given {len(layers)} times for {len(nets)} networks; "
                      "give one per network, in order, or none")
  plt = _plt()
  fig, axes = plt.subplots(len(nets), 2, figsize=(8, 3.2 * len(nets)), squeeze=False,
                           gridspec_kw={"width_ratios": [1, 3]})
  out = {}
  for (ax_in, ax_maps), net, layer in zip(axes, nets, layers):
    check_layers(net, [layer])
    x, y = test_images(net, 1, args.dataset, first=args.image)
    maps = np.asarray(capture(net, jnp.asarray(x))[layer][0])  # (h, w, c)
    shown = maps[..., :args.max_maps]
    lo = shown.min(axis=(0, 1), keepdims=True)
    hi = shown.max(axis=(0, 1), keepdims=True)
    tiles = np.moveaxis((shown - lo) / np.maximum(hi - lo, 1e-12), -1, 0)[..., None]
    ax_in.imshow(x[0].mean(-1) if x.shape[-1] != 3 else
                 (x[0] - x[0].min()) / np.ptp(x[0]), cmap="gray")
    ax_in.set_title(f"test image {args.image}" + ("" if y is None else f" (label {y[0]})"),
                    fontsize=8)
    ax_in.axis("off")
    ax_maps.imshow(_grid(tiles, min(8, len(tiles))), cmap="viridis", interpolation="nearest")
    ax_maps.set_title(f"{net.label}: {layer}, {shown.shape[-1]} of {maps.shape[-1]} maps "
                      f"{maps.shape[0]}x{maps.shape[1]} (each map its own range)", fontsize=8)
    ax_maps.axis("off")
    out[net.label] = {"layer": layer, "image": args.image,
                      "label": None if y is None else int(y[0]),
                      "shape": list(maps.shape),
                      # The PNG is the picture; each tile is stretched from its map's
                      # min to its max, the numbers a reader needs to compare them.
                      "min": _sig(maps.min(axis=(0, 1))), "mean": _sig(maps.mean(axis=(0, 1))),
                      "max": _sig(maps.max(axis=(0, 1)))}
  _save(fig, args.output)
  return out


def erf_table(net: Net, x: np.ndarray, most: int) -> list[dict]:
  """Theoretical and effective fields of up to ``most`` layers (evenly spaced)."""
  layers = [l for l in spatial_layers(net.report()).values() if None not in l.field.size]
  layers = _evenly(layers, most)
  paths = [l.path for l in layers]
  erfs = effective_rfs(lambda v: {p: y for p, y in capture(net, v).items() if p in paths}, x)
  rows = []
  for layer in layers:
    erf = erfs[layer.path]
    top, left, h, w = support(erf)
    rows.append({"layer": layer.path, "theoretical": list(layer.field.size),
                 "jump": list(layer.field.jump), "support": [top, left, h, w],
                 "effective_95": list(mass_width(erf)), "erf": erf})
  return rows


def run_rf(nets: list[Net], args) -> dict:
  nets = [m for n in nets for m in ([n, n.untrained(args.seed)] if n.trained else [n])]
  tables = []
  for net in nets:
    x, _ = test_images(net, args.images, args.dataset)
    tables.append(erf_table(net, x, args.max_layers))
  plt = _plt()
  from matplotlib.patches import Rectangle  # pylint: disable=g-import-not-at-top
  cols = max(len(t) for t in tables)
  fig, axes = plt.subplots(len(nets), cols, figsize=(1.9 * cols, 2.1 * len(nets)),
                           squeeze=False)
  out = {}
  for row, net, table in zip(axes, nets, tables):
    for ax, r in zip(row, table):
      ax.imshow(r["erf"], cmap="magma", interpolation="nearest")
      top, left, h, w = r["support"]
      th, tw = r["theoretical"]
      cy, cx = top + (h - 1) / 2, left + (w - 1) / 2
      ax.add_patch(Rectangle((cx - tw / 2, cy - th / 2), tw, th, fill=False, ec="cyan",
                             lw=1))
      ax.set_xlim(-0.5, r["erf"].shape[1] - 0.5)
      ax.set_ylim(r["erf"].shape[0] - 0.5, -0.5)
      eh, ew = r["effective_95"]
      ax.set_title(f"{r['layer']}\nRF {th}, 95%: {ew}", fontsize=7)
      ax.set_xticks([])
      ax.set_yticks([])
    for ax in row[len(table):]:
      ax.axis("off")
    row[0].set_ylabel(net.label, fontsize=7)
    # The maps are the PNG; the JSON keeps the widths and each axis's marginal (the
    # share of the gradient per input column / row, what ``mass_width`` integrates).
    out[net.label] = [{k: v for k, v in r.items() if k != "erf"} |
                      {"marginal_x": _sig(r["erf"].sum(0) / r["erf"].sum()),
                       "marginal_y": _sig(r["erf"].sum(1) / r["erf"].sum())}
                      for r in table]
  fig.suptitle("Effective receptive fields: |d centre unit / d input|, mean over "
               f"{args.images} test images; cyan: the theoretical field", fontsize=9)
  _save(fig, args.output)
  return out


def run_shift(nets: list[Net], args) -> dict:
  out = {}
  plt = _plt()
  # Constrained layout reserves room for each panel's layer names (ResNet's are long),
  # so they never run into the panel on their left.
  fig, axes = plt.subplots(1, len(nets), figsize=(4.4 * len(nets), 4.8), squeeze=False,
                           layout="constrained")
  for ax, net in zip(axes[0], nets):
    layers = spatial_layers(net.report())
    jumps = {p: (l.field.jump[1] if l.field.size[1] is not None else None)
             for p, l in layers.items()}
    x, _ = test_images(net, args.images, args.dataset)
    features = jax.jit(lambda v, net=net: {p: y for p, y in capture(net, v).items()
                                           if p in jumps})
    logits = jax.jit(lambda v, net=net: net.model.apply(net.variables, v, train=False))
    result = shift_equivariance(features, jumps, jnp.asarray(x), args.max_shift, logits)
    names = list(result)
    grid = np.array([result[n] for n in names])
    ax.imshow(grid, cmap="RdYlGn", vmin=0.5, vmax=1.0, aspect="auto",
              interpolation="nearest")
    ax.set_yticks(range(len(names)))
    ax.set_yticklabels([n if n == "same class" or jumps[n] is None else f"{n} (jump {jumps[n]})"
                        for n in names], fontsize=6)
    ax.set_xticks(range(args.max_shift + 1))
    ax.set_xlabel("input shift (pixels)", fontsize=8)
    ax.set_title(net.label, fontsize=8)
    for i in range(grid.shape[0]):
      for j in range(grid.shape[1]):
        ax.text(j, i, f"{grid[i, j]:.2f}", ha="center", va="center", fontsize=5)
    out[net.label] = {"jumps": jumps, "cosine": {n: result[n] for n in names}}
  fig.suptitle("Shift equivariance: cosine(maps of the shifted input, maps shifted by "
               "shift/jump); last row: P(same predicted class)", fontsize=9)
  _save(fig, args.output)
  return out


def run_strip(nets: list[Net], args) -> dict:
  from training import data  # pylint: disable=g-import-not-at-top
  import input_pipeline  # pylint: disable=g-import-not-at-top
  if len(nets) != 1:
    raise InsideError("strip takes one network (a fully convolutional LeNet-5)")
  net = nets[0]
  if net.config is None:
    raise InsideError("strip needs the network's digits: pass --checkpoint or --config")
  ds = data.load_in_memory(net.config)
  mean, std = data.normalization_stats(net.config, ds)
  digits = np.flatnonzero(ds.test_labels[args.image:] < 10)[:args.digits] + args.image
  shape = (ds.image_shape[0], args.width, ds.image_shape[2])
  field = analysis.analyze(net.model, (1, *shape)).outputs[0]
  if not isinstance(field, analysis.Field) or None in field.size:
    raise InsideError(f"{net.name} is not fully convolutional: its output on a "
                      f"{shape[0]}x{shape[1]} strip is not a row of columns")
  jump, size = field.jump[1], field.size[1]
  # Each digit centred on an output column's window, as the network was trained to read
  # one (pixel size // 2 of a window); between them, windows the background class knows.
  last = size // 2 + jump * ((args.width - size) // jump)
  strip, centres = compose_strip(ds.test_images[digits], args.width,
                                 grid=(size // 2, jump, last))
  x = np.asarray(input_pipeline.normalize(strip, mean, std))
  scores = column_scores(net, x)
  names = [str(c) for c in range(10)] + (["none"] if scores.shape[1] > 10 else [])
  names += [str(c) for c in range(len(names), scores.shape[1])]
  plt = _plt()
  # One x axis in strip pixels for both panels: each output column drawn under the
  # centre of its window, so a digit sits above the column that reads it.
  fig, (ax_s, ax_c) = plt.subplots(2, 1, figsize=(max(5, args.width / 10), 6), sharex=True,
                                   gridspec_kw={"height_ratios": [1.2, 1]})
  ax_s.imshow(strip[..., 0], cmap="gray_r", aspect="auto",
              extent=(-0.5, args.width - 0.5, strip.shape[0] - 0.5, -0.5))
  ax_s.set_title(f"{net.label}: test digits {', '.join(map(str, ds.test_labels[digits]))}",
                 fontsize=8)
  ax_s.set_yticks([])
  centres_out = [column_window(k, jump, size)[0] + size / 2 - 0.5
                 for k in range(len(scores))]
  ax_s.set_xticks(centres_out)
  ax_s.set_xticklabels(["-" if names[c] == "none" else names[c] for c in scores.argmax(1)],
                       fontsize=8)
  ax_s.tick_params(axis="x", bottom=True, labelbottom=True)
  ax_c.imshow(scores.T, cmap="Greys", vmin=0, vmax=1, aspect="auto", interpolation="nearest",
              extent=(centres_out[0] - jump / 2, centres_out[-1] + jump / 2,
                      len(names) - 0.5, -0.5))
  ax_c.set_xlim(-0.5, args.width - 0.5)
  ax_c.set_yticks(range(len(names)))
  ax_c.set_yticklabels(names, fontsize=7)
  ax_c.set_xlabel(f"strip column (pixels); one output column every {jump} px, drawn at its "
                  f"{size}-px window's centre; tick labels above: the winning class "
                  "(-: none)", fontsize=8)
  _save(fig, args.output)
  return {"net": net.label, "digits": ds.test_labels[digits].tolist(),
          "digit_centres": centres, "window": size, "jump": jump,
          "digit_columns": [(c - size // 2) // jump for c in centres],
          "winners": [names[c] for c in scores.argmax(1)],
          "scores": np.round(scores, 4).tolist(), "classes": names}


def run_timeline(nets: list[Net], args) -> dict:
  del nets
  if not os.path.exists(args.reference):
    raise InsideError(f"{args.reference} not found: pass --reference PATH/REFERENCE.md")
  with open(args.reference) as f:
    records = read_reference(f.read())
  plt = _plt()
  fig, (ax_a, ax_p, ax_m) = plt.subplots(1, 3, figsize=(15, 4.6),
                                         gridspec_kw={"width_ratios": [2.2, 2.2, 1]})
  ranked = [r for r in records if r["top1"] is not None and r["gmacs"] is not None]
  ax_a.scatter([r["year"] for r in ranked], [r["top1"] for r in ranked],
               s=[25 * r["gmacs"] for r in ranked], alpha=0.45, c="tab:blue")
  for r in ranked:
    ax_a.annotate(r["model"], (r["year"], r["top1"]), fontsize=6, ha="center", va="center")
  ax_a.set_xlabel("year")
  ax_a.set_ylabel("ImageNet top-1 (%)")
  ax_a.set_title("ImageNet top-1 by year; bubble area = multiply-adds at 224", fontsize=9)
  sized = [r for r in records if r["params"] is not None]
  ax_p.scatter([r["year"] for r in sized], [r["params"] for r in sized], c="tab:orange")
  for r in sized:
    ax_p.annotate(r["model"], (r["year"], r["params"]), fontsize=6, xytext=(3, 0),
                  textcoords="offset points")
  ax_p.set_yscale("log")
  ax_p.set_xlabel("year")
  ax_p.set_ylabel("parameters")
  ax_p.set_title("Parameters by year (papers' counts, = ours)", fontsize=9)
  ax_m.barh([f"{m} ({d})" for m, d, _ in MEASURED], [a for _, _, a in MEASURED],
            color="tab:green")
  ax_m.set_xlim(90, 100)
  ax_m.tick_params(axis="y", labelsize=7)
  ax_m.set_title("Measured here (README results), top-1 %", fontsize=9)
  fig.tight_layout()
  _save(fig, args.output)
  return {"reference": records,
          "measured": [{"model": m, "dataset": d, "top1": a} for m, d, a in MEASURED]}


def run_dead(nets: list[Net], args) -> dict:
  plt = _plt()
  out = {}
  fig, axes = plt.subplots(1, len(nets), figsize=(4.4 * len(nets), 4.8), squeeze=False,
                           layout="constrained")
  for ax, net in zip(axes[0], nets):
    x, _ = test_images(net, args.images, args.dataset, args.image)
    dead = never_positive(capture(net, jnp.asarray(x)))  # in program order
    names = list(dead)
    ax.barh(range(len(names)), [100 * dead[n] for n in names], color="tab:red")
    ax.set_yticks(range(len(names)))
    ax.set_yticklabels(names, fontsize=6)
    ax.invert_yaxis()  # program order, top down
    ax.set_xlim(0, 100)
    ax.set_xlabel(f"units <= 0 on all {len(x)} test images (%)", fontsize=8)
    ax.set_title(net.label, fontsize=8)
    out[net.label] = {"images": len(x), "never_positive": dead}
    print(f"{net.label}: " + ", ".join(f"{n} {100 * v:.0f}%" for n, v in dead.items()))
  fig.suptitle("Units never positive (dead, where a ReLU follows)", fontsize=9)
  _save(fig, args.output)
  return out


COMMANDS = {"filters": run_filters, "features": run_features, "rf": run_rf,
            "shift": run_shift, "strip": run_strip, "timeline": run_timeline,
            "dead": run_dead}


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
  p = cli.ArgumentParser(description=__doc__.split("\n\n")[0].strip(),
                         formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("what", choices=WHATS)
  p.add_argument("--checkpoint", dest="nets", action="append", default=[],
                 type=lambda s: ("checkpoint", s), metavar="WORKDIR",
                 help="a train.py workdir (its latest checkpoint); repeat for more")
  p.add_argument("--config", dest="nets", action="append", type=lambda s: ("config", s),
                 metavar="SPEC", help="a config (path.py[:arg]) at initialisation; repeats")
  p.add_argument("--model", help="a registered model: at initialisation on its canonical "
                 "input, or the model every --checkpoint must be")
  p.add_argument("--dataset", help="test images from this dataset instead of the run's")
  p.add_argument("--layer", action="append", help="features: the layer (module path), "
                 "once per network")
  p.add_argument("--image", type=int, default=0, help="the first test image used")
  p.add_argument("--images", type=int, default=32, help="rf, shift, dead: test images used")
  p.add_argument("--max_shift", type=int, default=8, help="shift: largest shift, pixels")
  p.add_argument("--max_layers", type=int, default=6, help="rf: layers shown per network")
  p.add_argument("--max_maps", type=int, default=32, help="features: maps shown")
  p.add_argument("--digits", type=int, default=3, help="strip: test digits on the strip")
  p.add_argument("--width", type=int, default=64, help="strip: its width in pixels")
  p.add_argument("--seed", type=int, default=0, help="initialisation seed")
  p.add_argument("--reference", default=REFERENCE, help="timeline: REFERENCE.md")
  p.add_argument("--output", help="the PNG (default docs/inspect/<what>.png); the JSON "
                 "goes beside it")
  args = p.parse_args(argv)
  args.output = args.output or os.path.join("docs", "inspect", f"{args.what}.png")
  return args


def load_nets(args: argparse.Namespace) -> list[Net]:
  nets = []
  for kind, source in args.nets:
    nets.append(load_checkpoint(source, args.model) if kind == "checkpoint"
                else load_config(source, args.seed))
  if not nets and args.model:
    nets.append(load_model(args.model, args.seed))
  if not nets and args.what != "timeline":
    raise InsideError(f"{args.what} needs a network: --checkpoint WORKDIR, --config SPEC "
                      "or --model NAME")
  return nets


def main(argv: Sequence[str] | None = None) -> int:
  args = parse_args(argv)
  from training import config as config_lib  # pylint: disable=g-import-not-at-top
  import input_pipeline  # pylint: disable=g-import-not-at-top
  if min(args.images, args.max_layers, args.max_maps, args.digits, args.width) < 1 or (
      args.max_shift < 0 or args.image < 0):
    print("error: --images, --max_layers, --max_maps, --digits and --width must be "
          "positive, --max_shift and --image >= 0", file=sys.stderr)
    return 2
  try:
    result = COMMANDS[args.what](load_nets(args), args)
  except (InsideError, config_lib.ConfigError, input_pipeline.DatasetError,
          models.UnknownModelError, models.ModelOptionError) as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  path = os.path.splitext(args.output)[0] + ".json"
  with open(path, "w") as f:
    json.dump(result, f, indent=1)
  print(f"wrote {args.output} and {path}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
