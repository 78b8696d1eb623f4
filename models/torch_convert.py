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
"""

from __future__ import annotations

import os
from typing import Any, Callable, Mapping

import jax
import numpy as np

_CONVERTERS: dict[str, Callable[..., dict]] = {}


class ConversionError(ValueError):
  """A checkpoint that does not fit the model; the message names the key and the fix."""


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
    return sorted(set(self._tensors) - self._read)


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
            input_shape: tuple[int, ...] | None = None) -> dict:
  """Converts a PyTorch ``state_dict`` for ``model_name`` into Flax variables.

  With ``model`` (our module) and ``input_shape`` (NHWC, batch included) the result is
  also checked leaf by leaf against ``model.init``'s tree and shapes.
  """
  if model_name not in _CONVERTERS:
    raise ConversionError(
        f"no PyTorch converter for model {model_name!r}; models with one: "
        f"{', '.join(list_convertible())}")
  sd = StateDict(state_dict)
  variables = _CONVERTERS[model_name](sd, model)
  leftover = sd.unread()
  if leftover:
    raise ConversionError(
        f"{len(leftover)} checkpoint tensors were not used, e.g. {', '.join(leftover[:5])}; "
        f"the checkpoint is for a different variant of {model_name!r} (check its options, "
        "e.g. aux_logits or batch_norm)")
  if model is not None and input_shape is not None:
    check_tree(model, variables, input_shape)
  return variables


def check_tree(model, variables: dict, input_shape: tuple[int, ...]) -> None:
  """Raises ConversionError unless ``variables`` has ``model``'s exact tree and shapes."""
  x = jax.ShapeDtypeStruct(input_shape, np.float32)
  expected = jax.eval_shape(lambda x: model.init(jax.random.key(0), x, train=False), x)
  want = {jax.tree_util.keystr(p): v.shape
          for p, v in jax.tree_util.tree_leaves_with_path(expected)}
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
