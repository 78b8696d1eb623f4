"""Weights from PyTorch checkpoints (torchvision, timm) as Flax variables.

    from models import create_model, torch_convert
    model = create_model("vgg16", num_classes=1000)
    state_dict = torch_convert.load_state_dict("vgg16-397923af.pth")
    variables = torch_convert.convert("vgg16", state_dict, model=model)
    logits = model.apply(variables, images_nhwc, train=False)

Each model family registers a converter next to its module (``@register_converter``),
which reads the PyTorch names it knows with the helpers below. Conversion is strict:
a key the converter never read, a missing key or a shape that differs from our model's
is a :class:`ConversionError` that names it, never a silently half-loaded model.

Layouts: PyTorch convolutions are OIHW (grouped: O, I/groups, H, W), Flax's are HWIO;
PyTorch linear layers are (out, in), Flax's (in, out). Our models are NHWC, so a linear
layer that follows a flatten of a CxHxW map needs its input rows reordered from
PyTorch's (C, H, W) order to ours (H, W, C): :func:`dense_after_flatten`.

Layouts read here rather than by a family's converter: timm's VGG names
(``pre_logits.fc1/fc2``, ``head.fc``), torchvision's GoogLeNet without its auxiliary heads
(:func:`_googlenet_aux`), timm's ResNetV2 into ``resnet{d}_v2``
(:func:`convert_timm_resnet_v2`), and the layouts that do not convert, each refused in one
line (timm's ``legacy_seresnet*``: :func:`_check_layout`).

Export is the inverse (:func:`export`): our variables as a torchvision/timm state dict,
for every family with a converter, checked to convert back bit for bit.
"""

from __future__ import annotations

import os
import re
import warnings
from typing import Any, Callable, Mapping

import jax
import numpy as np


def keep_triton_out_beside_tensorflow() -> None:
  """Where TensorFlow is loaded (a TFDS dataset was read), makes ``import triton`` an
  ImportError instead of a crash.

  TensorFlow and triton each bring their own LLVM: imported after TensorFlow, triton's
  library ends the process with a segmentation fault (TF 2.21, torch 2.14.1's CUDA build
  on a CPU machine, 2026-12-06). torchvision and timm import triton through
  ``torch._dynamo``; without it they work, and ``torch.compile`` uses its C++ backend on
  a CPU (on a GPU it would need triton, and say so)."""
  import sys  # pylint: disable=g-import-not-at-top
  if "tensorflow" in sys.modules and "triton" not in sys.modules:
    sys.modules["triton"] = None


def import_torch() -> tuple[Any, Any] | None:
  """``(torch, torchvision or None)``, or None without torch.

  On a CPU-only torch, torchvision's compiled operators cannot register their fake
  kernels and its import fails; the classification models are pure Python, so the
  import is retried with that registration disabled. Used by the equivalence tests
  (tests/torch_reference.py) and benchmarks/throughput.py.
  """
  import sys  # pylint: disable=g-import-not-at-top
  keep_triton_out_beside_tensorflow()
  try:
    import torch  # pylint: disable=g-import-not-at-top
  except ImportError:
    return None
  try:
    import torchvision  # pylint: disable=g-import-not-at-top
  except (ImportError, RuntimeError, OSError):
    for name in [m for m in sys.modules if m.startswith("torchvision")]:
      del sys.modules[name]
    register_fake = torch.library.register_fake
    torch.library.register_fake = lambda *a, **k: (lambda fn: fn)
    try:
      import torchvision  # pylint: disable=g-import-not-at-top
    except Exception:  # pylint: disable=broad-except
      torchvision = None
    finally:
      torch.library.register_fake = register_fake
  return torch, torchvision

_CONVERTERS: dict[str, Callable[..., dict]] = {}


class ConversionError(ValueError):
  """A checkpoint that does not fit the model; the message names the key and the fix."""


class ConversionNote(UserWarning):
  """What a conversion did beyond a one-to-one copy (auxiliary heads left out, dropped);
  warned when :func:`convert` is given no ``notes`` list to collect it in."""


def register_converter(*model_names: str):
  """Registers ``fn(sd: StateDict, model) -> variables`` for the named models."""
  def wrap(fn):
    for name in model_names:
      if name in _CONVERTERS:
        raise ValueError(f"a converter for {name!r} is registered twice")
      _CONVERTERS[name] = fn
    return fn
  return wrap


def list_convertible() -> list[str]:
  return sorted(_CONVERTERS)


class StateDict:
  """A PyTorch state dict as NumPy arrays that records which keys were read."""

  def __init__(self, tensors: Mapping[str, Any]):
    self._tensors = {k: _to_numpy(v) for k, v in tensors.items()
                     if not k.endswith("num_batches_tracked")}
    self._read: set[str] = set()
    self._renamed: dict[str, str] = {}  # our alias -> the checkpoint's own name
    self.notes: list[str] = []  # what the conversion did beyond copying, for the user
    self.absent: list[str] = []  # our top-level modules left out (kept as initialised)

  def rename(self, key: str, new_key: str, value: np.ndarray) -> None:
    """Reads ``key`` as ``new_key`` (another library's name for the same layer), with
    ``value`` its tensor in that library's layout; messages keep the checkpoint's name."""
    del self._tensors[key]
    self._tensors[new_key] = value
    self._renamed[new_key] = self._renamed.get(key, key)

  def peek(self, key: str) -> np.ndarray:
    """A tensor, without marking it read (to check a layout before converting)."""
    return self._tensors[key]

  def __contains__(self, key: str) -> bool:
    return key in self._tensors

  def keys(self):
    return self._tensors.keys()

  def get(self, key: str) -> np.ndarray:
    if key not in self._tensors:
      raise ConversionError(
          f"the checkpoint has no {key!r}; is it for another model or variant? "
          f"Its first keys: {', '.join(list(self._tensors)[:6])}")
    self._read.add(key)
    return self._tensors[key]

  def unread(self) -> list[str]:
    return sorted(self._renamed.get(k, k) for k in set(self._tensors) - self._read)


def detect_source(sd: StateDict, model_name: str, markers: Mapping[str, str]) -> str:
  """Which library's naming a checkpoint uses: ``markers`` maps a source ('torchvision',
  'timm') to a key only that source's checkpoints have. A converter that reads both
  calls this first, so one ``convert(name, sd)`` takes either library's file."""
  for source, key in markers.items():
    if key in sd:
      return source
  raise ConversionError(
      f"cannot tell whose checkpoint this is for {model_name!r}: expected a "
      + " or a ".join(f"{src} key {key!r}" for src, key in markers.items())
      + f"; its first keys: {', '.join(list(sd.keys())[:6])}")


def _check_format(path: str) -> None:
  """A file that is no checkpoint at all is said to be so, before any library is asked
  for: safetensors starts with an 8-byte header length and a JSON header; torch.save
  writes a zip archive (or, before PyTorch 1.6, a pickle)."""
  with open(path, "rb") as f:
    head = f.read(9)
  if path.endswith(".safetensors"):
    size = int.from_bytes(head[:8], "little") if len(head) >= 8 else 0
    if len(head) < 9 or head[8:9] != b"{" or size > os.path.getsize(path) - 8:
      raise ConversionError(f"{path!r} is not a safetensors file (no safetensors header); "
                            "pass a .safetensors, .pth or converted checkpoint")
  elif not (head.startswith(b"PK\x03\x04") or head[:1] == b"\x80"):
    raise ConversionError(f"{path!r} is not a PyTorch checkpoint (neither torch.save's zip "
                          "archive nor a pickle); pass a .pth, .safetensors or converted "
                          "checkpoint")


def load_state_dict(path: str) -> dict[str, np.ndarray]:
  """Reads a ``.pth``/``.pt``/``.bin`` (needs torch) or ``.safetensors`` file.

  A checkpoint that wraps its weights (``{"state_dict": ...}`` or ``{"model": ...}``,
  as training scripts save them) is unwrapped; a ``module.`` prefix (DataParallel) is
  removed.
  """
  if not os.path.isfile(path):
    raise ConversionError(f"checkpoint file not found: {path!r}")
  _check_format(path)
  if path.endswith(".safetensors"):
    try:
      from safetensors.numpy import load_file
    except ImportError:
      raise ConversionError("reading .safetensors needs the safetensors package: "
                            "pip install safetensors") from None
    tensors = load_file(path)
  else:
    try:
      import torch
    except ImportError:
      raise ConversionError(f"reading {path!r} needs PyTorch (pip install torch), or "
                            "convert it to .safetensors first") from None
    try:
      obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unpickling failure means a bad file
      raise ConversionError(f"cannot read {path!r} as a PyTorch checkpoint: "
                            f"{type(e).__name__}: {str(e).splitlines()[0]}") from None
    for wrapper in ("state_dict", "model", "model_state"):
      if isinstance(obj, dict) and wrapper in obj and isinstance(obj[wrapper], dict):
        obj = obj[wrapper]
    if not isinstance(obj, dict):
      raise ConversionError(f"{path!r} holds a {type(obj).__name__}, not a state dict")
    tensors = obj
  return {k.removeprefix("module."): _to_numpy(v) for k, v in tensors.items()}


def convert(model_name: str, state_dict: Mapping[str, Any], model=None,
            input_shape: tuple[int, ...] | None = None,
            notes: list[str] | None = None) -> dict:
  """Converts a PyTorch ``state_dict`` for ``model_name`` into Flax variables.

  With ``model`` (our module) and ``input_shape`` (NHWC, batch included) the result is
  also checked leaf by leaf against ``model.init``'s tree and shapes. What the conversion
  did beyond copying tensors (GoogLeNet's auxiliary heads left out or dropped) is
  appended to ``notes``, or warned (:class:`ConversionNote`) without a list.
  """
  if model_name not in _CONVERTERS:
    raise ConversionError(
        f"no PyTorch converter for model {model_name!r}; models with one: "
        f"{', '.join(list_convertible())}")
  sd = StateDict(state_dict)
  _check_layout(model_name, sd)
  if re.fullmatch(r"vgg\d+(_bn)?", model_name):
    _timm_vgg_names(sd)
  if model_name == "googlenet":
    variables = _googlenet_aux(_CONVERTERS[model_name], sd, model)
  else:
    variables = _CONVERTERS[model_name](sd, model)
  leftover = sd.unread()
  if leftover:
    raise ConversionError(
        f"{len(leftover)} checkpoint tensors were not used, e.g. {', '.join(leftover[:5])}; "
        f"the checkpoint is for a different variant of {model_name!r} (check its options, "
        "e.g. aux_logits or batch_norm)")
  if model is not None and input_shape is not None:
    check_tree(model, variables, input_shape, absent=sd.absent)
  for note in sd.notes:
    if notes is not None:
      notes.append(note)
    else:
      warnings.warn(note, ConversionNote, stacklevel=2)
  return variables


def check_tree(model, variables: dict, input_shape: tuple[int, ...],
               absent: tuple[str, ...] | list[str] = ()) -> None:
  """Raises ConversionError unless ``variables`` has ``model``'s exact tree and shapes
  (but for the top-level modules named in ``absent``, which the checkpoint lacks)."""
  x = jax.ShapeDtypeStruct(input_shape, np.float32)
  expected = jax.eval_shape(lambda x: model.init(jax.random.key(0), x, train=False), x)
  want = {jax.tree_util.keystr(p): v.shape
          for p, v in jax.tree_util.tree_leaves_with_path(expected)
          if not (len(p) > 1 and getattr(p[1], "key", None) in absent)}
  got = {jax.tree_util.keystr(p): np.shape(v)
         for p, v in jax.tree_util.tree_leaves_with_path(variables)}
  missing, extra = sorted(set(want) - set(got)), sorted(set(got) - set(want))
  if missing or extra:
    raise ConversionError(f"converted variables do not match the model: missing "
                          f"{missing[:4]}, unexpected {extra[:4]}")
  bad = [f"{k}: {got[k]} vs {want[k]}" for k in want if tuple(got[k]) != tuple(want[k])]
  if bad:
    raise ConversionError(f"shape mismatch (checkpoint vs model): {'; '.join(bad[:4])}")


# ----------------------------------------------------------------------------
# Layer helpers: each reads one PyTorch layer's tensors by prefix.


def conv(sd: StateDict, prefix: str, bias: bool | None = None) -> dict[str, np.ndarray]:
  """``nn.Conv2d`` -> ``{'kernel': HWIO, 'bias'}`` (bias read if present or asked)."""
  out = {"kernel": np.transpose(sd.get(f"{prefix}.weight"), (2, 3, 1, 0))}
  if bias or (bias is None and f"{prefix}.bias" in sd):
    out["bias"] = sd.get(f"{prefix}.bias")
  return out


def dense(sd: StateDict, prefix: str) -> dict[str, np.ndarray]:
  """``nn.Linear`` -> ``{'kernel': (in, out), 'bias'}``."""
  out = {"kernel": sd.get(f"{prefix}.weight").T}
  if f"{prefix}.bias" in sd:
    out["bias"] = sd.get(f"{prefix}.bias")
  return out


def dense_after_flatten(sd: StateDict, prefix: str,
                        chw: tuple[int, int, int]) -> dict[str, np.ndarray]:
  """A linear layer fed by ``torch.flatten`` of a (C, H, W) map, for our (H, W, C) one."""
  c, h, w = chw
  weight = sd.get(f"{prefix}.weight")
  if weight.shape[1] != c * h * w:
    raise ConversionError(f"{prefix}.weight has {weight.shape[1]} inputs, expected "
                          f"{c}x{h}x{w} = {c * h * w}")
  kernel = weight.reshape(-1, c, h, w).transpose(2, 3, 1, 0).reshape(h * w * c, -1)
  return {"kernel": kernel, "bias": sd.get(f"{prefix}.bias")}


def batch_norm(sd: StateDict, prefix: str) -> tuple[dict, dict]:
  """``nn.BatchNorm2d`` -> (params ``{'scale','bias'}``, stats ``{'mean','var'}``)."""
  params = {"scale": sd.get(f"{prefix}.weight"), "bias": sd.get(f"{prefix}.bias")}
  stats = {"mean": sd.get(f"{prefix}.running_mean"), "var": sd.get(f"{prefix}.running_var")}
  return params, stats


def layer_norm(sd: StateDict, prefix: str) -> dict[str, np.ndarray]:
  """``nn.LayerNorm`` -> ``{'scale', 'bias'}``."""
  return {"scale": sd.get(f"{prefix}.weight"), "bias": sd.get(f"{prefix}.bias")}


def _to_numpy(v: Any) -> np.ndarray:
  if hasattr(v, "detach"):  # a torch.Tensor; bf16 has no NumPy dtype
    v = v.detach().cpu()
    if str(v.dtype) == "torch.bfloat16":
      v = v.float()
    return v.numpy().copy()  # a copy: a view would change with the torch module
  return np.asarray(v)


# ----------------------------------------------------------------------------
# Layouts read here: another library's names for a family's layers, a GoogLeNet without
# its auxiliary heads, timm's ResNetV2; and the layouts that do not convert, said so.

_RESNET_DEPTHS = (18, 34, 50, 101, 152)
_AUX_HEADS = ("aux1", "aux2")


def _check_layout(model_name: str, sd: StateDict) -> None:
  """Refuses, in one line, a checkpoint whose layout is not the model's at all."""
  if "layer0.conv1.weight" in sd and "last_linear.weight" in sd:
    raise ConversionError(
        "this is timm's legacy SENet layout (legacy_seresnet*: layer0, se_module, "
        "last_linear), another layout: the Caffe SE-ResNets stride the 1x1 conv of a "
        "bottleneck, max-pool the stem 3x3/2 with ceil_mode and no padding (ours pads 1, "
        "so the windows differ) and size the SE layer C//16; models.resnet has no such "
        "stem, so it does not convert: use timm's seresnet* (-> se_resnet*)")
  if (re.fullmatch(r"(se_)?resnet\d+", model_name) and "stem.conv.weight" in sd
      and "stages.0.blocks.0.conv1.weight" in sd):
    raise ConversionError(
        f"this is timm's pre-activation ResNetV2 (resnetv2_*): convert it into "
        f"{model_name.removeprefix('se_')}_v2, not {model_name!r}")


def _timm_vgg_names(sd: StateDict) -> None:
  """timm's VGG names fc6 ``pre_logits.fc1`` (a 7x7 conv), fc7 ``pre_logits.fc2`` (a 1x1
  conv) and fc8 ``head.fc``; reshaped to linear layers they are torchvision's
  ``classifier.0/3/6`` (timm's own loader reshapes the other way), and are read as such.

  timm's VGG equals ours up to 224x224 (below, both pool the last map up to 7x7 as
  torchvision does); above, timm slides fc6/fc7 over the map and averages, which is
  our ``VGG.dense`` evaluation, not our default ``__call__``.
  """
  if "pre_logits.fc1.weight" not in sd:
    return
  for theirs, tv, size in (("pre_logits.fc1", "classifier.0", 7),
                           ("pre_logits.fc2", "classifier.3", 1), ("head.fc", "classifier.6", 0)):
    if f"{theirs}.weight" not in sd:
      raise ConversionError(f"a timm VGG checkpoint (pre_logits.fc1) without "
                            f"{theirs}.weight: is it cut short, or another model?")
    weight = sd.peek(f"{theirs}.weight")
    if size:
      if weight.ndim != 4 or weight.shape[2:] != (size, size):
        raise ConversionError(f"{theirs}.weight has shape {weight.shape}; timm's VGG has a "
                              f"{size}x{size} conv there (out, in, {size}, {size})")
      weight = weight.reshape(weight.shape[0], -1)
    sd.rename(f"{theirs}.weight", f"{tv}.weight", weight)
    if f"{theirs}.bias" in sd:
      sd.rename(f"{theirs}.bias", f"{tv}.bias", sd.peek(f"{theirs}.bias"))


def _googlenet_aux(convert_fn: Callable[..., dict], sd: StateDict, model) -> dict:
  """GoogLeNet with or without auxiliary heads, whichever the checkpoint and model have.

  torchvision deletes ``aux1``/``aux2`` when it loads its weights into a model with
  ``aux_logits=False`` (its default for inference), so a state dict saved from such a
  model has none. Then the rest converts and our heads are left out: a model with
  ``aux_logits=True`` keeps them as initialised (train.py's ``--config.init_from``
  initialises them fresh and says so; evaluation does not run them). A checkpoint's heads
  are dropped for a model with ``aux_logits=False``. Each case is a note.
  """
  present = [h for h in _AUX_HEADS if any(k.startswith(f"{h}.") for k in sd.keys())]
  model_aux = None if model is None else bool(getattr(model, "aux_logits", False))
  if present:
    if model_aux is False:
      sd.notes.append(f"googlenet: the checkpoint's auxiliary heads ({', '.join(present)}) "
                      "are dropped: the model has aux_logits=False")
    return convert_fn(sd, model)
  if not model_aux:
    if model is None:
      sd.notes.append("googlenet: the checkpoint has no auxiliary heads (aux1, aux2): "
                      "converted without them")
    return convert_fn(sd, model)
  variables = convert_fn(sd, model.clone(aux_logits=False))
  sd.absent = list(_AUX_HEADS)
  sd.notes.append(
      "googlenet: the checkpoint has no auxiliary heads (torchvision deletes aux1 and aux2 "
      "when it loads its weights with aux_logits=False): converted without them, so the "
      "model's aux1 and aux2 keep their initialisation (train.py's --config.init_from "
      "initialises them fresh; evaluation does not use them)")
  return variables


@register_converter(*(f"resnet{d}_v2" for d in _RESNET_DEPTHS))
def convert_timm_resnet_v2(sd: StateDict, model=None) -> dict:
  """timm's ``resnetv2_50/101/152`` state dict -> variables of ``resnet{d}_v2``.

  Both are He et al. 2016's full pre-activation ResNet (BN-ReLU before each conv, stride
  on the 3x3 conv, projections fed the pre-activated input, a final BN-ReLU, timm's
  ``norm``, before the pooling), and the names map one to one
  (``stages.{s}.blocks.{b}.norm{i}/conv{i}`` -> ``stage{s+1}_block{b+1}.bn{i}/conv{i}``,
  ``downsample.conv`` -> ``proj_conv``, ``norm`` -> ``final_bn``, ``head.fc``, a 1x1
  conv, -> ``fc``), except in the stem: ours is conv-BN-ReLU-max pool (fb.resnet.torch),
  timm's conv-max pool with that BN-ReLU as the first unit's ``norm1``. The two compute
  the same exactly when that BN's scale is >= 0 in every channel (a non-decreasing
  per-channel map commutes with a max), so such weights convert and others are refused.
  timm's basic-block ResNetV2s (resnetv2_18/34) project the first unit of stage 1 (64 ->
  64) with a 1x1 conv where ours keeps the identity: another layout, refused; so are the
  BiT models (GroupNorm, weight-standardised convs) and the deep stems (``resnetv2_50d``).
  """
  from models import resnet  # pylint: disable=g-import-not-at-top (models imports us)
  if model is not None and not (isinstance(model, resnet.ResNet) and model.version == "v2"
                                and not model.se_reduction):
    raise ConversionError("timm's ResNetV2 converts into resnet{d}_v2 models (version='v2', "
                          "no SE blocks), not into a model with other options")
  if "layer1.0.conv1.weight" in sd:
    raise ConversionError("this is a post-activation ResNet (torchvision's or timm's "
                          "resnet*): convert it into resnet{d}, not into a _v2 model")
  if "stem.conv1.weight" in sd:
    raise ConversionError("this is timm's deep-stem ResNetV2 (resnetv2_*d: three 3x3 stem "
                          "convs, average-pool shortcuts), another layout: resnet{d}_v2 has "
                          "the 7x7 stem")
  detect_source(sd, "resnet_v2", {"timm": "stem.conv.weight"})
  first = "stages.0.blocks.0.norm1"
  if f"{first}.weight" in sd and f"{first}.running_mean" not in sd:
    raise ConversionError("this ResNetV2 normalises with GroupNorm (timm's BiT "
                          "resnetv2_*x*_bit, with weight-standardised convs), another "
                          "layout: resnet{d}_v2 has BatchNorm")
  params: dict[str, Any] = {"conv1": conv(sd, "stem.conv")}
  stats: dict[str, Any] = {}
  params["bn1"], stats["bn1"] = batch_norm(sd, first)  # timm's first norm1: our stem BN
  negative = int(np.sum(params["bn1"]["scale"] < 0))
  if negative:
    raise ConversionError(
        f"timm's ResNetV2 applies its stem BN-ReLU ({first}) after the max pool, ours "
        f"before it; the two agree only where that BN's scale is >= 0, and {negative} of "
        f"its {params['bn1']['scale'].size} channels are negative: these weights do not "
        "convert into resnet{d}_v2")
  channels = params["conv1"]["kernel"].shape[-1]
  s = 0
  while f"stages.{s}.blocks.0.conv1.weight" in sd:
    b = 0
    while f"stages.{s}.blocks.{b}.conv1.weight" in sd:
      theirs, ours = f"stages.{s}.blocks.{b}", f"stage{s + 1}_block{b + 1}"
      p, st = params.setdefault(ours, {}), stats.setdefault(ours, {})
      i = 1
      while f"{theirs}.conv{i}.weight" in sd:
        p[f"conv{i}"] = conv(sd, f"{theirs}.conv{i}")
        if (s, b, i) != (0, 0, 1):  # that one is the stem's, read above
          p[f"bn{i}"], st[f"bn{i}"] = batch_norm(sd, f"{theirs}.norm{i}")
        i += 1
      out = p[f"conv{i - 1}"]["kernel"].shape[-1]
      project = b == 0 and (s > 0 or out != channels)  # ours: where the shape changes
      if (f"{theirs}.downsample.conv.weight" in sd) != project:
        raise ConversionError(
            f"{theirs} {'lacks' if project else 'has'} a projection shortcut "
            f"(downsample.conv) where ours {'projects' if project else 'keeps the identity'}"
            ": timm's basic-block ResNetV2 (resnetv2_18/34) projects the first unit of "
            "every stage, ours only where the shape changes; another layout, which does "
            "not convert")
      if project:
        p["proj_conv"] = conv(sd, f"{theirs}.downsample.conv")
      channels = out
      b += 1
    s += 1
  params["final_bn"], stats["final_bn"] = batch_norm(sd, "norm")
  weight = sd.get("head.fc.weight")  # timm's head is a 1x1 conv (use_conv=True)
  if weight.ndim == 4:
    if weight.shape[2:] != (1, 1):
      raise ConversionError(f"head.fc.weight has shape {weight.shape}; expected a 1x1 conv")
    weight = weight.reshape(weight.shape[:2])
  params["fc"] = {"kernel": weight.T, "bias": sd.get("head.fc.bias")}
  return {"params": jax.tree.map(np.array, params), "batch_stats": jax.tree.map(np.array, stats)}


# ----------------------------------------------------------------------------
# Export: our variables as a torchvision or timm state dict, each converter's inverse.


class Variables:
  """Our variables by path (``'params/conv1/kernel'``), recording which were read."""

  def __init__(self, variables: Mapping[str, Any]):
    self._leaves: dict[str, np.ndarray] = {}
    for path, leaf in jax.tree_util.tree_leaves_with_path(dict(variables)):
      self._leaves["/".join(str(getattr(k, "key", k)) for k in path)] = np.asarray(leaf)
    self._read: set[str] = set()

  def __contains__(self, path: str) -> bool:
    return path in self._leaves or any(k.startswith(f"{path}/") for k in self._leaves)

  def get(self, path: str) -> np.ndarray:
    if path not in self._leaves:
      raise ConversionError(f"our variables have no {path!r}; are they for another model "
                            f"or variant? Their first: {', '.join(list(self._leaves)[:4])}")
    self._read.add(path)
    return self._leaves[path]

  def count(self, pattern: str) -> int:
    """How many of ``pattern.format(1)``, ``pattern.format(2)``, ... exist, in a row."""
    n = 0
    while pattern.format(n + 1) in self:
      n += 1
    return n

  def leaves(self) -> dict[str, np.ndarray]:
    return dict(self._leaves)

  def unread(self) -> list[str]:
    return sorted(set(self._leaves) - self._read)


# Inverse layer helpers: ``out[theirs...] <- our params/{ours}`` (and batch_stats/{ours}).


def conv_out(out: dict, v: Variables, theirs: str, ours: str) -> None:
  """Inverse of :func:`conv`: HWIO kernel -> OIHW ``weight``, and the bias if any."""
  out[f"{theirs}.weight"] = np.transpose(v.get(f"params/{ours}/kernel"), (3, 2, 0, 1))
  if f"params/{ours}/bias" in v:
    out[f"{theirs}.bias"] = v.get(f"params/{ours}/bias")


def dense_out(out: dict, v: Variables, theirs: str, ours: str) -> None:
  """Inverse of :func:`dense`: (in, out) kernel -> (out, in) ``weight``, and the bias."""
  out[f"{theirs}.weight"] = v.get(f"params/{ours}/kernel").T
  if f"params/{ours}/bias" in v:
    out[f"{theirs}.bias"] = v.get(f"params/{ours}/bias")


def dense_after_flatten_out(out: dict, v: Variables, theirs: str, ours: str,
                            hw: tuple[int, int]) -> None:
  """Inverse of :func:`dense_after_flatten`: rows in our (H, W, C) order -> PyTorch's
  (C, H, W) order of ``torch.flatten``."""
  kernel = v.get(f"params/{ours}/kernel")
  h, w = hw
  if kernel.shape[0] % (h * w):
    raise ConversionError(f"{ours} has {kernel.shape[0]} inputs, not a {h}x{w}xC map")
  c = kernel.shape[0] // (h * w)
  out[f"{theirs}.weight"] = (kernel.reshape(h, w, c, -1).transpose(3, 2, 0, 1)
                             .reshape(kernel.shape[1], c * h * w))
  out[f"{theirs}.bias"] = v.get(f"params/{ours}/bias")


def batch_norm_out(out: dict, v: Variables, theirs: str, ours: str) -> None:
  """Inverse of :func:`batch_norm`, with PyTorch's ``num_batches_tracked`` (0)."""
  out[f"{theirs}.weight"] = v.get(f"params/{ours}/scale")
  out[f"{theirs}.bias"] = v.get(f"params/{ours}/bias")
  out[f"{theirs}.running_mean"] = v.get(f"batch_stats/{ours}/mean")
  out[f"{theirs}.running_var"] = v.get(f"batch_stats/{ours}/var")
  out[f"{theirs}.num_batches_tracked"] = np.zeros((), np.int64)


def layer_norm_out(out: dict, v: Variables, theirs: str, ours: str) -> None:
  out[f"{theirs}.weight"] = v.get(f"params/{ours}/scale")
  out[f"{theirs}.bias"] = v.get(f"params/{ours}/bias")


def _conv_bn_out(out: dict, v: Variables, conv_name: str, bn_name: str, ours: str) -> None:
  """A ConvBN block (``{ours}/conv``, ``{ours}/bn``) -> a conv and a BatchNorm."""
  conv_out(out, v, conv_name, f"{ours}/conv")
  batch_norm_out(out, v, bn_name, f"{ours}/bn")


# One exporter per family, the inverse of its converter: (v, model, source) -> state dict.


def _export_resnet(v: Variables, model, source: str) -> dict:
  del model, source  # torchvision and timm name a ResNet alike; timm's SE adds se.fc1/fc2
  out: dict[str, np.ndarray] = {}
  conv_out(out, v, "conv1", "conv1")
  batch_norm_out(out, v, "bn1", "bn1")
  for s in range(1, v.count("params/stage{}_block1") + 1):
    for b in range(1, v.count(f"params/stage{s}_block{{}}") + 1):
      ours, theirs = f"stage{s}_block{b}", f"layer{s}.{b - 1}"
      for i in range(1, v.count(f"params/{ours}/conv{{}}") + 1):
        conv_out(out, v, f"{theirs}.conv{i}", f"{ours}/conv{i}")
        batch_norm_out(out, v, f"{theirs}.bn{i}", f"{ours}/bn{i}")
      if f"params/{ours}/proj_conv" in v:
        conv_out(out, v, f"{theirs}.downsample.0", f"{ours}/proj_conv")
        batch_norm_out(out, v, f"{theirs}.downsample.1", f"{ours}/proj_bn")
      if f"params/{ours}/se" in v:
        conv_out(out, v, f"{theirs}.se.fc1", f"{ours}/se/fc1")
        conv_out(out, v, f"{theirs}.se.fc2", f"{ours}/se/fc2")
  dense_out(out, v, "fc", "fc")
  return out


def _export_resnet_v2(v: Variables, model, source: str) -> dict:
  del model, source
  out: dict[str, np.ndarray] = {}
  conv_out(out, v, "stem.conv", "conv1")
  negative = int(np.sum(v.get("params/bn1/scale") < 0))
  if negative:
    raise ConversionError(
        f"our stem BN (bn1) has {negative} channels with a negative scale: timm's ResNetV2 "
        "applies that BN-ReLU after the max pool (as stages.0.blocks.0.norm1), ours before "
        "it, and the two agree only where the scale is >= 0; these weights do not export")
  batch_norm_out(out, v, "stages.0.blocks.0.norm1", "bn1")
  for s in range(1, v.count("params/stage{}_block1") + 1):
    for b in range(1, v.count(f"params/stage{s}_block{{}}") + 1):
      ours, theirs = f"stage{s}_block{b}", f"stages.{s - 1}.blocks.{b - 1}"
      for i in range(1, v.count(f"params/{ours}/conv{{}}") + 1):
        if f"params/{ours}/bn{i}" in v:  # not in the first unit: its norm1 is the stem's
          batch_norm_out(out, v, f"{theirs}.norm{i}", f"{ours}/bn{i}")
        conv_out(out, v, f"{theirs}.conv{i}", f"{ours}/conv{i}")
      if f"params/{ours}/proj_conv" in v:
        conv_out(out, v, f"{theirs}.downsample.conv", f"{ours}/proj_conv")
      elif b == 1:
        raise ConversionError(
            f"{ours} has no projection shortcut, but timm's ResNetV2 projects the first unit "
            "of every stage (resnetv2_18/34 even 64 -> 64): another layout, which does not "
            "export")
  batch_norm_out(out, v, "norm", "final_bn")
  out["head.fc.weight"] = v.get("params/fc/kernel").T[:, :, None, None]  # a 1x1 conv
  out["head.fc.bias"] = v.get("params/fc/bias")
  return out


def _export_vgg(v: Variables, model, source: str) -> dict:
  del model
  out: dict[str, np.ndarray] = {}
  with_bn = "params/bn1_1" in v
  index = 0  # torchvision's features.{index}: conv, [BN,] ReLU per conv, one per pool
  for s in range(1, v.count("params/conv{}_1") + 1):
    for i in range(1, v.count(f"params/conv{s}_{{}}") + 1):
      conv_out(out, v, f"features.{index}", f"conv{s}_{i}")
      if with_bn:
        batch_norm_out(out, v, f"features.{index + 1}", f"bn{s}_{i}")
      index += 3 if with_bn else 2
    index += 1  # the stage's max pool
  dense_after_flatten_out(out, v, "classifier.0", "fc6", (7, 7))
  dense_out(out, v, "classifier.3", "fc7")
  dense_out(out, v, "classifier.6", "fc8")
  if source == "timm":  # fc6 as a 7x7 conv, fc7 as a 1x1 conv (the reverse of the above)
    channels = v.get(f"params/conv{v.count('params/conv{}_1')}_1/kernel").shape[-1]
    for tv, timm_name, size in (("classifier.0", "pre_logits.fc1", 7),
                                ("classifier.3", "pre_logits.fc2", 1), ("classifier.6", "head.fc", 0)):
      weight = out.pop(f"{tv}.weight")
      inputs = channels if size == 7 else weight.shape[1]
      out[f"{timm_name}.weight"] = (weight.reshape(weight.shape[0], inputs, size, size)
                                    if size else weight)
      out[f"{timm_name}.bias"] = out.pop(f"{tv}.bias")
  return out


def _export_alexnet(v: Variables, model, source: str) -> dict:
  del model, source
  from models import alexnet  # pylint: disable=g-import-not-at-top
  out: dict[str, np.ndarray] = {}
  for i, j in enumerate(alexnet._TV_CONVS):  # pylint: disable=protected-access
    conv_out(out, v, f"features.{j}", f"conv{i + 1}")
  fc6, fc7, fc8 = alexnet._TV_FCS  # pylint: disable=protected-access
  dense_after_flatten_out(out, v, f"classifier.{fc6}", "fc6", (6, 6))
  dense_out(out, v, f"classifier.{fc7}", "fc7")
  dense_out(out, v, f"classifier.{fc8}", "fc8")
  return out


def _export_densenet(v: Variables, model, source: str) -> dict:
  del model, source  # torchvision's current names, which timm shares
  out: dict[str, np.ndarray] = {}
  conv_out(out, v, "features.conv0", "conv0")
  batch_norm_out(out, v, "features.norm0", "norm0")
  for i in range(1, v.count("params/denseblock{}") + 1):
    for j in range(1, v.count(f"params/denseblock{i}/denselayer{{}}") + 1):
      theirs, ours = f"features.denseblock{i}.denselayer{j}", f"denseblock{i}/denselayer{j}"
      for norm_name, conv_name in (("norm1", "conv1"), ("norm2", "conv2")):
        batch_norm_out(out, v, f"{theirs}.{norm_name}", f"{ours}/{norm_name}")
        conv_out(out, v, f"{theirs}.{conv_name}", f"{ours}/{conv_name}")
    if f"params/transition{i}" in v:
      batch_norm_out(out, v, f"features.transition{i}.norm", f"transition{i}/norm")
      conv_out(out, v, f"features.transition{i}.conv", f"transition{i}/conv")
  batch_norm_out(out, v, "features.norm5", "norm_final")
  dense_out(out, v, "classifier", "classifier")
  return out


def _export_googlenet(v: Variables, model, source: str) -> dict:
  del model, source
  from models import inception  # pylint: disable=g-import-not-at-top
  out: dict[str, np.ndarray] = {}

  def block(theirs: str, ours: str) -> None:
    _conv_bn_out(out, v, f"{theirs}.conv", f"{theirs}.bn", ours)

  for ours, theirs in (("conv1", "conv1"), ("conv2_reduce", "conv2"), ("conv2", "conv3")):
    block(theirs, ours)
  for name in inception.GOOGLENET_MODULES:
    for ours, theirs in inception._TORCHVISION_TOWERS.items():  # pylint: disable=protected-access
      block(f"inception{name}.{theirs}", f"inception{name}/{ours}")
  for head in _AUX_HEADS:  # none when the model has aux_logits=False
    if f"params/{head}" in v:
      block(f"{head}.conv", f"{head}/conv")
      dense_after_flatten_out(out, v, f"{head}.fc1", f"{head}/fc1", (4, 4))
      dense_out(out, v, f"{head}.fc2", f"{head}/fc2")
  dense_out(out, v, "fc", "fc")
  return out


def _export_mobilenet_v1(v: Variables, model, source: str) -> dict:
  del model, source  # timm's mobilenetv1_*: blocks.{stage}.{i}, a new stage at stride 2
  from models import mobilenet  # pylint: disable=g-import-not-at-top
  out: dict[str, np.ndarray] = {}
  _conv_bn_out(out, v, "conv_stem", "bn1", "conv1")
  i = j = -1
  for n, (_, stride) in enumerate(mobilenet.MOBILENET_V1_BODY):
    i, j = (i + 1, 0) if n == 0 or stride == 2 else (i, j + 1)
    prefix, ours = f"blocks.{i}.{j}", f"dsconv{n + 1}"
    _conv_bn_out(out, v, f"{prefix}.conv_dw", f"{prefix}.bn1", f"{ours}/depthwise")
    _conv_bn_out(out, v, f"{prefix}.conv_pw", f"{prefix}.bn2", f"{ours}/pointwise")
  dense_out(out, v, "classifier", "fc")
  return out


def _export_mobilenet_v2(v: Variables, model, source: str) -> dict:
  del model
  from models import mobilenet  # pylint: disable=g-import-not-at-top
  table = mobilenet.MOBILENET_V2_BOTTLENECKS
  names = [(seq, i) for seq, (_, _, n, _) in enumerate(table) for i in range(n)]
  out: dict[str, np.ndarray] = {}
  if source == "torchvision":
    _conv_bn_out(out, v, "features.0.0", "features.0.1", "conv1")
    for k, (seq, i) in enumerate(names):
      block, f = f"bottleneck{seq + 1}_{i + 1}", f"features.{k + 1}.conv"
      layers = (["expand"] if table[seq][0] != 1 else []) + ["depthwise"]
      for n, layer in enumerate(layers):
        _conv_bn_out(out, v, f"{f}.{n}.0", f"{f}.{n}.1", f"{block}/{layer}")
      n = len(layers)
      _conv_bn_out(out, v, f"{f}.{n}", f"{f}.{n + 1}", f"{block}/project")
    last = f"features.{len(names) + 1}"
    _conv_bn_out(out, v, f"{last}.0", f"{last}.1", "conv2")
    dense_out(out, v, "classifier.1", "fc")
  else:
    _conv_bn_out(out, v, "conv_stem", "bn1", "conv1")
    for seq, i in names:
      block, f = f"bottleneck{seq + 1}_{i + 1}", f"blocks.{seq}.{i}"
      if table[seq][0] == 1:
        _conv_bn_out(out, v, f"{f}.conv_dw", f"{f}.bn1", f"{block}/depthwise")
        _conv_bn_out(out, v, f"{f}.conv_pw", f"{f}.bn2", f"{block}/project")
      else:
        _conv_bn_out(out, v, f"{f}.conv_pw", f"{f}.bn1", f"{block}/expand")
        _conv_bn_out(out, v, f"{f}.conv_dw", f"{f}.bn2", f"{block}/depthwise")
        _conv_bn_out(out, v, f"{f}.conv_pwl", f"{f}.bn3", f"{block}/project")
    _conv_bn_out(out, v, "conv_head", "bn2", "conv2")
    dense_out(out, v, "classifier", "fc")
  return out


def _export_convnext(v: Variables, model, source: str) -> dict:
  del model
  from models import convnext  # pylint: disable=g-import-not-at-top
  out: dict[str, np.ndarray] = {}
  names, stage_prefix, down_prefix, gamma_key, layer_index = convnext.torch_names(source)
  conv_out(out, v, names["stem_conv"], "stem_conv")
  layer_norm_out(out, v, names["stem_norm"], "stem_norm")
  for s in range(v.count("params/stage{}_block1")):
    if s > 0:
      layer_norm_out(out, v, f"{down_prefix(s)}.0", f"downsample{s + 1}_norm")
      conv_out(out, v, f"{down_prefix(s)}.1", f"downsample{s + 1}_conv")
    for b in range(v.count(f"params/stage{s + 1}_block{{}}")):
      prefix, ours = f"{stage_prefix(s)}.{b}", f"stage{s + 1}_block{b + 1}"
      theirs = {o: f"{prefix}.{pair[layer_index]}"
                for o, pair in convnext._BLOCK_LAYERS.items()}  # pylint: disable=protected-access
      conv_out(out, v, theirs["dwconv"], f"{ours}/dwconv")
      layer_norm_out(out, v, theirs["norm"], f"{ours}/norm")
      dense_out(out, v, theirs["pwconv1"], f"{ours}/pwconv1")
      dense_out(out, v, theirs["pwconv2"], f"{ours}/pwconv2")
      if f"params/{ours}/layer_scale" in v:  # torchvision: (C, 1, 1); timm: (C,)
        gamma = v.get(f"params/{ours}/layer_scale/gamma")
        out[f"{prefix}.{gamma_key}"] = gamma.reshape(-1, 1, 1) if layer_index == 0 else gamma
  layer_norm_out(out, v, names["head_norm"], "head_norm")
  dense_out(out, v, names["head"], "head")
  return out


def _export_vit(v: Variables, model, source: str) -> dict:
  del model
  from models import vit  # pylint: disable=g-import-not-at-top
  names = vit._TORCHVISION if source == "torchvision" else vit._TIMM  # pylint: disable=protected-access
  out: dict[str, np.ndarray] = {}
  conv_out(out, v, names["conv"], "patch_embed")
  if "params/cls_token" in v:
    out[names["cls"]] = v.get("params/cls_token")
  out[names["pos"]] = v.get("params/pos_embed")
  for i in range(v.count("params/block{}")):
    b, ours = names["block"].format(i), f"block{i + 1}"
    layer_norm_out(out, v, f"{b}.{names['ln1']}", f"{ours}/ln1")
    out[f"{b}.{names['qkv']}weight"] = v.get(f"params/{ours}/attn/qkv/kernel").T
    out[f"{b}.{names['qkv']}bias"] = v.get(f"params/{ours}/attn/qkv/bias")
    dense_out(out, v, f"{b}.{names['proj']}", f"{ours}/attn/proj")
    layer_norm_out(out, v, f"{b}.{names['ln2']}", f"{ours}/ln2")
    dense_out(out, v, f"{b}.{names['fc1']}", f"{ours}/mlp/fc1")
    dense_out(out, v, f"{b}.{names['fc2']}", f"{ours}/mlp/fc2")
  layer_norm_out(out, v, names["norm"], "encoder_norm")
  if "params/pre_logits" in v:
    if not names["pre_logits"]:
      raise ConversionError("timm's ViT has no pre-logits layer (representation_size): "
                            "export this model in torchvision's layout")
    dense_out(out, v, names["pre_logits"], "pre_logits")
  dense_out(out, v, names["head"], "head")
  return out


_BOTH = ("torchvision", "timm")
_DEPTHS = "|".join(str(d) for d in _RESNET_DEPTHS)
# Our model names (a regular expression), exporter, layouts (the first is the default)
# and the classifier (whose bias gives the class count).
_EXPORTERS: tuple[tuple[str, Callable[..., dict], tuple[str, ...], str], ...] = (
    (rf"resnet({_DEPTHS})", _export_resnet, _BOTH, "fc"),
    (rf"se_resnet({_DEPTHS})", _export_resnet, ("timm",), "fc"),
    (rf"resnet({_DEPTHS})_v2", _export_resnet_v2, ("timm",), "fc"),
    (r"vgg\d+(_bn)?", _export_vgg, _BOTH, "fc8"),
    (r"alexnet_torchvision", _export_alexnet, ("torchvision",), "fc8"),
    (r"densenet\d+", _export_densenet, _BOTH, "classifier"),
    (r"googlenet", _export_googlenet, ("torchvision",), "fc"),
    (r"mobilenet_v1(_\d+)?", _export_mobilenet_v1, ("timm",), "fc"),
    (r"mobilenet_v2(_\d+)?", _export_mobilenet_v2, _BOTH, "fc"),
    (r"convnext_[a-z]+", _export_convnext, _BOTH, "head"),
    (r"vit_[a-z]+\d+", _export_vit, _BOTH, "head"),
)


def _exporter(model_name: str) -> tuple[Callable[..., dict], tuple[str, ...], str]:
  if model_name in _CONVERTERS:
    for pattern, fn, sources, classifier in _EXPORTERS:
      if re.fullmatch(pattern, model_name):
        return fn, sources, classifier
  raise ConversionError(f"no PyTorch export for model {model_name!r}; models with one: "
                        f"{', '.join(list_exportable())}")


def list_exportable() -> list[str]:
  return [n for n in list_convertible() if any(re.fullmatch(e[0], n) for e in _EXPORTERS)]


def export_layouts(model_name: str) -> tuple[str, ...]:
  """The libraries whose layout ``model_name`` exports to; the first is the default."""
  return _exporter(model_name)[1]


def num_classes(model_name: str, variables: Mapping[str, Any]) -> int:
  """The class count of our ``variables``: the size of the classifier's bias."""
  classifier = _exporter(model_name)[2]
  leaves = Variables(variables)
  return int(np.shape(leaves.get(f"params/{classifier}/bias"))[-1])


def export(model_name: str, variables: Mapping[str, Any], model=None,
           source: str | None = None, verify: bool = True) -> dict[str, np.ndarray]:
  """Our ``variables`` of ``model_name`` as a PyTorch state dict, the inverse of
  :func:`convert`: ``source``'s names and layouts ('torchvision' or 'timm'; default the
  first of :func:`export_layouts`), NumPy arrays (OIHW convs, (out, in) linear layers, BN
  running statistics and a ``num_batches_tracked`` of 0), for ``torch.from_numpy`` or
  :func:`save_safetensors`; ``model.load_state_dict(...)`` takes it in strict mode.

  Every variable must find its place, else a ConversionError names those that do not.
  With ``verify`` the state dict is converted back (given ``model``, the converter also
  checks its options: a v1 ResNet does not export as torchvision's v1.5) and must give
  ``variables`` again, bit for bit.
  """
  fn, sources, _ = _exporter(model_name)
  source = source or sources[0]
  if source not in sources:
    raise ConversionError(f"{model_name} exports in {' or '.join(sources)}'s layout, not "
                          f"{source!r}")
  v = Variables(variables)
  out = fn(v, model, source)
  left = v.unread()
  if left:
    raise ConversionError(f"{len(left)} of our variables have no place in {source}'s "
                          f"layout of {model_name}, e.g. {', '.join(left[:4])}: the model "
                          "has options that layout does not have")
  out = {k: np.ascontiguousarray(a) for k, a in out.items()}
  if verify:
    check_same(convert(model_name, out, model=model, notes=[]), variables,
               f"the {source} export of {model_name} converted back")
  return out


def check_same(got: Mapping[str, Any], want: Mapping[str, Any], what: str) -> None:
  """Raises ConversionError unless two variable trees are equal, bit for bit."""
  got_leaves, want_leaves = Variables(got).leaves(), Variables(want).leaves()
  missing = sorted(set(want_leaves) - set(got_leaves))
  extra = sorted(set(got_leaves) - set(want_leaves))
  bad = [k for k in want_leaves if k in got_leaves and not (
      got_leaves[k].dtype == want_leaves[k].dtype and got_leaves[k].shape == want_leaves[k].shape
      and got_leaves[k].tobytes() == want_leaves[k].tobytes())]
  if missing or extra or bad:
    raise ConversionError(f"{what} differs from the original: missing {missing[:3]}, "
                          f"unexpected {extra[:3]}, different {bad[:3]}")


def save_safetensors(path: str, state_dict: Mapping[str, np.ndarray],
                     metadata: Mapping[str, str] | None = None) -> None:
  """Writes a state dict as ``.safetensors`` (``format: pt`` in its metadata, as
  PyTorch-side loaders expect), through a temporary file: never a half-written file."""
  try:
    from safetensors.numpy import save_file  # pylint: disable=g-import-not-at-top
  except ImportError:
    raise ConversionError("writing .safetensors needs the safetensors package: "
                          "pip install safetensors") from None
  tmp = f"{path}.tmp-{os.getpid()}"
  try:
    save_file({k: np.ascontiguousarray(a) for k, a in state_dict.items()}, tmp,
              metadata={"format": "pt", **(metadata or {})})
    os.replace(tmp, path)
  finally:
    if os.path.exists(tmp):
      os.remove(tmp)
