"""What a model costs and what it sees: multiply-adds, parameters, receptive fields.

A program analyser, not a model: it reads any Flax model's traced program, so the model
report (tools/model_report.py), the sweep collector (launch/collect.py), the benchmarks,
tools/inside.py and experiments/ use it.

``count_macs`` traces ``model.apply`` to a jaxpr (no compilation, no weights: the
variables are abstract) and adds up the multiply-accumulates of every convolution and
matrix product. That is the convention of the papers' "FLOPs" columns (ResNet-50: 4.1G,
ConvNeXt-T: 4.5G at 224x224) and of fvcore, which the ConvNeXt authors used: norms,
activations, pooling and additions are not counted.

``analyze`` walks the same jaxpr along its dataflow, so branches, concatenations and
residual additions are followed as the program wires them, not in layer order. For every
array it tracks, per input axis (H, W), the receptive field (how many input pixels one
value can see) and the jump (how many input pixels apart two neighbouring positions are,
the cumulative stride), with the standard recurrences (Araujo et al., "Computing
receptive fields of convolutional neural networks", Distill 2019):

    conv or pool, kernel k, dilation d, stride s:  rf' = rf + (k - 1) d jump,  jump' = s jump

Padding does not change either. Where paths meet (add, concatenate, multiply) the field
is the largest of theirs; their jumps must agree. A global pool, a flatten into a dense
layer, or attention makes the field the whole image. Anything the walk cannot follow (a
loop, a gather over space, a transposed convolution, mismatched jumps, a pool over a
crop such as adaptive pooling with uneven bins) gives an ``Unknown`` naming the op,
never a number.

Flax records each module's path in the equations' ``source_info.name_stack``
("ResNet/stage1_block1/conv2"); ``analyze`` uses it to report each layer and to sum
parameters (each counted at the first equation that reads it), multiply-adds and the
output field per top-level module (or any depth).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable, Iterator, NamedTuple, Sequence

import jax
import jax.numpy as jnp
from jax.extend import core as jex_core

import kernels


# ------------------------------------------------------------------------------ MACs


def _subjaxprs(eqn) -> Iterator[Any]:
  for param in eqn.params.values():
    items = param if isinstance(param, (tuple, list)) else (param,)
    for item in items:
      if isinstance(item, jex_core.ClosedJaxpr):
        yield item.jaxpr
      elif isinstance(item, jex_core.Jaxpr):
        yield item


def _constants(jaxpr, constant_in: Sequence[bool] = ()) -> set:
  """Variables whose values do not depend on the inputs (weights or images), inner
  jaxprs included: e.g. the identity kernel with which a locally connected layer
  extracts its patches. A convolution by such a kernel is data movement, not MACs."""
  const = set(jaxpr.constvars)
  const.update(v for v, c in zip(jaxpr.invars, constant_in) if c)
  for eqn in jaxpr.eqns:
    flags = [isinstance(a, jex_core.Literal) or a in const for a in eqn.invars]
    for sub in _subjaxprs(eqn):
      const |= _constants(sub, flags if len(sub.invars) == len(flags) else ())
    if all(flags):
      const.update(eqn.outvars)
  return const


def _eqn_macs(eqn, constants: set = frozenset()) -> int:
  name = eqn.primitive.name
  if name == "conv_general_dilated":
    if eqn.invars[1] in constants:
      return 0  # a fixed kernel: patch extraction or a fixed filter, not a layer
    lhs, rhs = (v.aval for v in eqn.invars)
    out = eqn.outvars[0].aval
    dn = eqn.params["dimension_numbers"]
    # Each output element costs one MAC per kernel element of one group:
    # kernel spatial size x input features per group.
    kernel_spatial = math.prod(rhs.shape[d] for d in dn.rhs_spec[2:])
    in_per_group = rhs.shape[dn.rhs_spec[1]]
    return math.prod(out.shape) * kernel_spatial * in_per_group
  if name == "dot_general":
    lhs, rhs = (v.aval for v in eqn.invars)
    (lhs_contract, _), _ = eqn.params["dimension_numbers"]
    contracted = math.prod(lhs.shape[d] for d in lhs_contract)
    return math.prod(eqn.outvars[0].aval.shape) * contracted
  return 0


def _jaxpr_macs(jaxpr, constants: set = frozenset()) -> int:
  total = 0
  for eqn in jaxpr.eqns:
    total += _eqn_macs(eqn, constants)
    for sub in _subjaxprs(eqn):
      # A loop body runs several times; no model here traces to a loop, so refuse
      # rather than guess.
      if eqn.primitive.name in ("while", "scan"):
        raise NotImplementedError("count_macs does not count inside loops")
      total += _jaxpr_macs(sub, constants)
  return total


def _trace(model, input_shape: tuple[int, ...]):
  """``model.apply`` on ``input_shape`` as a jaxpr, and the abstract variables. Traced
  with XLA's convolutions whatever ``config.conv_backend`` runs: they are what is
  counted and followed here."""
  x = jax.ShapeDtypeStruct(tuple(input_shape), jnp.float32)

  def forward(variables, x):
    return model.apply(variables, x, train=False)

  with kernels.conv_backend("xla"):
    variables = jax.eval_shape(
        lambda x: model.init(jax.random.key(0), x, train=False), x)
    return jax.make_jaxpr(forward)(variables, x), variables


def count_macs(model, input_shape: tuple[int, ...], train: bool = False) -> int:
  """Multiply-accumulates of one forward pass of ``model`` on ``input_shape`` (NHWC).

  Pass a batch of 1 for the per-image figure the papers quote.
  """
  closed, _ = _trace(model, input_shape)
  return _jaxpr_macs(closed.jaxpr, _constants(closed.jaxpr))


# ------------------------------------------------------------------- receptive fields


class Dim(NamedTuple):
  """One input axis (H or W) as seen by one array."""
  axis: int | None  # the array axis that holds it; None once pooled or flattened away
  size: int | None  # receptive field in input pixels; None: the whole image
  jump: int | None  # input pixels between neighbouring positions; None once gone
  whole: bool = True  # the positions still tile the whole input (no crop so far)


@dataclasses.dataclass(frozen=True)
class Field:
  """The receptive field of the values of one array: one ``Dim`` per input axis."""
  dims: tuple[Dim, ...]

  @property
  def size(self) -> tuple[int | None, ...]:
    return tuple(d.size for d in self.dims)

  @property
  def jump(self) -> tuple[int | None, ...]:
    return tuple(d.jump for d in self.dims)


@dataclasses.dataclass(frozen=True)
class Unknown:
  """A receptive field the analysis could not follow; ``reason`` names the first op."""
  reason: str


# None: the array does not depend on the image (weights, constants).
Value = Field | Unknown | None


class _Lost(Exception):
  """Raised by a transfer rule that cannot follow an op."""


def _collapse(d: Dim) -> Dim:
  """``d`` once its axis is pooled, flattened or contracted: each value now sees the
  whole image."""
  if not d.whole and d.size is not None:
    # Over a crop the result would see only part of the image, and pieces of such
    # pools put side by side (adaptive pooling with uneven bins) have no single stride.
    raise _Lost("a pool or flatten over part of an image axis")
  return Dim(None, None, None, d.whole)


def _moved(d: Dim, axis: int | None) -> Dim:
  return d._replace(axis=axis)


def _merge(values: Sequence[Value], what: str, distinct_is_global: bool = False) -> Value:
  """Fields of arrays combined position by position (add, multiply, concatenate).

  The receptive field is the largest; the jumps must agree. With
  ``distinct_is_global`` (a product of two image-dependent matrices), an input axis held
  by different array axes in the operands makes the field the whole image instead of an
  error: attention scores pair every position with every other.
  """
  fields = [v for v in values if v is not None]
  if not fields:
    return None
  for v in fields:
    if isinstance(v, Unknown):
      return v
  if len(fields) == 1:
    return fields[0]
  dims = []
  for per_op in zip(*(f.dims for f in fields)):
    held = [d for d in per_op if d.axis is not None]
    axes = {d.axis for d in held}
    jumps = {d.jump for d in held}
    whole = all(d.whole for d in per_op)
    if len(axes) > 1:
      if not distinct_is_global:
        raise _Lost(f"{what} pairs different array axes of the image")
      dims.append(Dim(held[0].axis, None, held[0].jump, whole))
      continue
    if len(jumps) > 1:
      raise _Lost(f"{what} of maps with different strides {sorted(jumps)}")
    sizes = [d.size for d in per_op]
    size = None if None in sizes else max(sizes)
    dims.append(Dim(held[0].axis if held else None, size,
                    held[0].jump if held else None, whole))
  return Field(tuple(dims))


def _shape(atom) -> tuple[int, ...]:
  return tuple(getattr(atom.aval, "shape", ()))


# Primitives that act on each position on its own (and scalar literals broadcast).
_ELEMENTWISE = frozenset("""
    abs acos acosh add add_any and asin asinh atan atan2 atanh cbrt ceil clamp conj
    convert_element_type copy copy_p cos cosh div eq erf erf_inv erfc exp exp2 expm1
    floor ge gt imag integer_pow is_finite le lgamma digamma log log1p logistic lt max
    min mul ne neg nextafter not or pow real reduce_precision rem round rsqrt select_n
    sign sin sinh sqrt square stop_gradient sub tan tanh xor
    """.split())
_REDUCTIONS = frozenset(
    "reduce_sum reduce_max reduce_min reduce_prod reduce_and reduce_or reduce_xor "
    "argmax argmin".split())
_POOLS = {"reduce_window_max": "max_pool", "reduce_window_sum": "sum_pool",
          "reduce_window_min": "min_pool", "reduce_window": "pool"}
# Primitives that call a sub-jaxpr once on their own operands: followed inside.
_CALLS = frozenset(
    "jit pjit closed_call core_call custom_jvp_call custom_vjp_call "
    "custom_vjp_call_jaxpr remat2 checkpoint remat".split())


def _windowed(x: Field, kernel: Sequence[int], dilation: Sequence[int],
              stride: Sequence[int], out_axis: Sequence[int | None]) -> Field:
  """``x`` after a window slides over its axes (one entry per array axis)."""
  dims = []
  for d in x.dims:
    if d.axis is None:
      dims.append(d)
      continue
    a = d.axis
    if sum(e.axis == a for e in x.dims) > 1 and (kernel[a] > 1 or stride[a] > 1):
      raise _Lost("a window slid over an axis that mixes H and W (tokens)")
    size = None if d.size is None else d.size + (kernel[a] - 1) * dilation[a] * d.jump
    dims.append(Dim(out_axis[a], size, d.jump * stride[a], d.whole))
  return Field(tuple(dims))


def _conv(eqn, ins: list[Value]) -> list[Value]:
  lhs, rhs = ins
  if rhs is not None:
    raise _Lost("a convolution whose kernel depends on the image")
  p = eqn.params
  if p["batch_group_count"] != 1:
    raise _Lost("a convolution with batch_group_count > 1")
  lspec, rspec, ospec = p["dimension_numbers"]
  kshape = _shape(eqn.invars[1])
  rank = len(lspec)
  kernel, dilation, stride, out_axis = [1] * rank, [1] * rank, [1] * rank, [None] * rank
  out_axis[lspec[0]] = ospec[0]  # the batch axis passes through
  for s in range(rank - 2):
    a = lspec[2 + s]
    if p["lhs_dilation"][s] != 1 and any(d.axis == a for d in lhs.dims):
      raise _Lost("a transposed (input-dilated) convolution")
    kernel[a], dilation[a] = kshape[rspec[2 + s]], p["rhs_dilation"][s]
    stride[a], out_axis[a] = p["window_strides"][s], ospec[2 + s]
  # An image axis held by the feature axis is summed over by the kernel.
  x = Field(tuple(_collapse(d) if d.axis == lspec[1] else d for d in lhs.dims))
  return [_windowed(x, kernel, dilation, stride, out_axis)]


def _pool(eqn, ins: list[Value]) -> list[Value]:
  x = ins[0]
  if any(v is not None for v in ins[1:]):
    raise _Lost("a pool whose initial value depends on the image")
  p = eqn.params
  rank = len(p["window_dimensions"])
  for d in x.dims:
    if d.axis is not None and p["base_dilation"][d.axis] != 1:
      raise _Lost("a pool with base dilation")
  return [_windowed(x, p["window_dimensions"], p["window_dilation"],
                    p["window_strides"], list(range(rank)))]


def _drop_axes(x: Field, gone: set[int]) -> list[Value]:
  """``x`` with the axes ``gone`` removed (a reduction over them, or a squeeze)."""
  dims = []
  for d in x.dims:
    if d.axis is None:
      dims.append(d)
    elif d.axis in gone:
      dims.append(_collapse(d))
    else:
      dims.append(_moved(d, d.axis - sum(a < d.axis for a in gone)))
  return [Field(tuple(dims))]


def _reduce(eqn, ins: list[Value]) -> list[Value]:
  (x,) = ins
  return _drop_axes(x, set(eqn.params["axes"]))


def _regroup(old: tuple[int, ...], new: tuple[int, ...]) -> list[tuple[list, list]]:
  """Groups of non-unit axes of ``old`` and ``new`` with equal products, in order."""
  o = [a for a, n in enumerate(old) if n != 1]
  w = [a for a, n in enumerate(new) if n != 1]
  groups, i, j = [], 0, 0
  while i < len(o) and j < len(w):
    go, gn = [o[i]], [w[j]]
    po, pn = old[o[i]], new[w[j]]
    i, j = i + 1, j + 1
    while po != pn:
      if po < pn:
        go.append(o[i])
        po *= old[o[i]]
        i += 1
      else:
        gn.append(w[j])
        pn *= new[w[j]]
        j += 1
    groups.append((go, gn))
  return groups


def _reshape(eqn, ins: list[Value]) -> list[Value]:
  x = ins[0]
  if eqn.params.get("dimensions") is not None:
    raise _Lost("a reshape with a dimension order")
  old, new = _shape(eqn.invars[0]), _shape(eqn.outvars[0])
  if old == new:
    return [x]
  image_axes = {d.axis for d in x.dims if d.axis is not None}
  where = {a: g for g in _regroup(old, new) for a in g[0]}
  dims = []
  for d in x.dims:
    if d.axis is None:
      dims.append(d)
    elif d.axis not in where:  # a unit axis dropped
      dims.append(_collapse(d))
    else:
      go, gn = where[d.axis]
      if len(gn) > 1:
        raise _Lost("a reshape that splits an image axis")
      if set(go) <= image_axes:  # H and W merged into one axis (ViT's tokens)
        dims.append(_moved(d, gn[0]))
      else:  # flattened together with the channels
        dims.append(_collapse(d))
  return [Field(tuple(dims))]


def _transpose(eqn, ins: list[Value]) -> list[Value]:
  perm = list(eqn.params["permutation"])
  return [Field(tuple(d if d.axis is None else _moved(d, perm.index(d.axis))
                      for d in ins[0].dims))]


def _squeeze(eqn, ins: list[Value]) -> list[Value]:
  return _drop_axes(ins[0], set(eqn.params["dimensions"]))


def _broadcast(eqn, ins: list[Value]) -> list[Value]:
  x = ins[0]
  if any(v is not None for v in ins[1:]):
    raise _Lost("a broadcast to an image-dependent shape")
  bd, old, new = eqn.params["broadcast_dimensions"], _shape(eqn.invars[0]), eqn.params["shape"]
  dims = []
  for d in x.dims:
    if d.axis is not None and old[d.axis] != new[bd[d.axis]]:
      raise _Lost("a 1-wide image axis broadcast over several positions")
    dims.append(d if d.axis is None else _moved(d, bd[d.axis]))
  return [Field(tuple(dims))]


def _slice(eqn, ins: list[Value]) -> list[Value]:
  p = eqn.params
  shape = _shape(eqn.invars[0])
  strides = p["strides"] or (1,) * len(shape)
  dims = []
  for d in ins[0].dims:
    if d.axis is None:
      dims.append(d)
      continue
    a = d.axis
    merged = sum(e.axis == a for e in ins[0].dims) > 1
    if merged and strides[a] != 1:
      raise _Lost("a strided slice of an axis that mixes H and W")
    # A stride s keeps every s-th position (ResNet's option-A shortcut); a crop keeps
    # the field of each position but no longer tiles the whole input.
    start, limit, step = p["start_indices"][a], p["limit_indices"][a], strides[a]
    last = start + (limit - start - 1) // step * step
    crop = start >= step or shape[a] - 1 - last >= step
    dims.append(Dim(a, d.size, d.jump * (1 if merged else strides[a]),
                    d.whole and not crop))
  return [Field(tuple(dims))]


def _pad(eqn, ins: list[Value]) -> list[Value]:
  x, value = ins
  if value is not None:
    raise _Lost("padding with an image-dependent value")
  for d in x.dims:
    if d.axis is not None and eqn.params["padding_config"][d.axis][2] != 0:
      raise _Lost("interior padding (dilation) of an image axis")
  return [x]


def _concatenate(eqn, ins: list[Value]) -> list[Value]:
  dim = eqn.params["dimension"]
  dependent = [v for v in ins if v is not None]
  if len(dependent) > 1 and any(d.axis == dim for v in dependent for d in v.dims):
    raise _Lost("a concatenation along an image axis")
  return [_merge(ins, "a concatenation")]


def _dot(eqn, ins: list[Value]) -> list[Value]:
  (lc, rc), (lb, rb) = eqn.params["dimension_numbers"]
  shapes = [_shape(v) for v in eqn.invars]
  lfree = [a for a in range(len(shapes[0])) if a not in lc and a not in lb]
  rfree = [a for a in range(len(shapes[1])) if a not in rc and a not in rb]
  placed = []
  for x, shape, contract, batch, free, offset in (
      (ins[0], shapes[0], lc, lb, lfree, len(lb)),
      (ins[1], shapes[1], rc, rb, rfree, len(lb) + len(lfree))):
    if x is None:
      placed.append(None)
      continue
    dims = []
    for d in x.dims:
      if d.axis is None:
        dims.append(d)
      elif d.axis in contract:
        dims.append(_collapse(d))
      elif d.axis in batch:
        dims.append(_moved(d, list(batch).index(d.axis)))
      else:
        dims.append(_moved(d, offset + free.index(d.axis)))
    placed.append(Field(tuple(dims)))
  return [_merge(placed, "a matrix product", distinct_is_global=True)]


def _gather(eqn, ins: list[Value]) -> list[Value]:
  x, indices = ins
  if indices is not None:
    raise _Lost("a gather with image-dependent indices")
  dn, sizes = eqn.params["dimension_numbers"], eqn.params["slice_sizes"]
  shape = _shape(eqn.invars[0])
  skipped = set(dn.collapsed_slice_dims) | set(dn.operand_batching_dims)
  offset_axes = [a for a in range(len(shape)) if a not in skipped]
  dims = []
  for d in x.dims:
    if d.axis is None:
      dims.append(d)
      continue
    a = d.axis
    if a in skipped or a in dn.start_index_map or sizes[a] != shape[a]:
      raise _Lost("a gather that indexes an image axis")
    dims.append(_moved(d, dn.offset_dims[offset_axes.index(a)]))
  return [Field(tuple(dims))]


_RULES: dict[str, Callable[[Any, list[Value]], list[Value]]] = {
    "conv_general_dilated": _conv, "reshape": _reshape, "transpose": _transpose,
    "squeeze": _squeeze, "broadcast_in_dim": _broadcast, "slice": _slice, "pad": _pad,
    "concatenate": _concatenate, "dot_general": _dot, "gather": _gather,
    **{name: _pool for name in _POOLS}, **{name: _reduce for name in _REDUCTIONS},
}


def _transfer(eqn, ins: list[Value]) -> list[Value]:
  """The fields of ``eqn``'s outputs from those of its inputs (not for calls)."""
  name = eqn.primitive.name
  if all(v is None for v in ins):
    return [None] * len(eqn.outvars)
  for v in ins:
    if isinstance(v, Unknown):
      return [v] * len(eqn.outvars)
  if name in _ELEMENTWISE:
    return [_merge(ins, name)] * len(eqn.outvars)
  if name in _RULES:
    return _RULES[name](eqn, ins)
  if name == "cond":  # any branch's field may come out: the largest
    per_branch = []
    for branch in eqn.params["branches"]:
      env = dict(zip(branch.jaxpr.invars, ins[1:]))
      _walk(branch.jaxpr, env, {}, (), [])
      per_branch.append([_read(env, v) for v in branch.jaxpr.outvars])
    return [_merge([*outs, ins[0]], "cond") for outs in zip(*per_branch)]
  raise _Lost(f"no receptive-field rule for {name!r}")


# ------------------------------------------------------------------------ the walk


@dataclasses.dataclass
class _Params:
  """One parameter array, counted at the first equation that reads it."""
  count: int
  used: bool = False


@dataclasses.dataclass
class _Step:
  path: tuple[str, ...]  # module path below the model, e.g. ("stage1_block1", "conv2")
  eqn: Any
  ins: list[Value]
  out: Value  # the field of the first output
  macs: int
  params: int  # parameters first read here


def _read(env: dict, atom) -> Value:
  if isinstance(atom, jex_core.Literal):
    return None
  return env.get(atom)


def _module_path(name_stack, root: str | None = None) -> tuple[str, ...]:
  # Module names are identifiers; other scopes are not: method calls appear as
  # "LeNet5._lenet5_1998", einsums as "bqhc,bkhc->bhqk". The model's own scope, the
  # first name of every top-level stack, is dropped.
  path = tuple(c for c in str(name_stack).split("/") if c.isidentifier())
  return path[1:] if root is not None and path[:1] == (root,) else path


def _call_jaxpr(eqn):
  if eqn.primitive.name not in _CALLS:
    return None
  for key in ("jaxpr", "call_jaxpr", "fun_jaxpr"):
    sub = eqn.params.get(key)
    if isinstance(sub, jex_core.ClosedJaxpr):
      sub = sub.jaxpr
    if isinstance(sub, jex_core.Jaxpr) and len(sub.invars) == len(eqn.invars):
      return sub
  return None


def _walk(jaxpr, env: dict, owners: dict, prefix: tuple[str, ...],
          steps: list[_Step], root: str | None = None,
          constants: set = frozenset()) -> None:
  """Follows ``jaxpr`` equation by equation, inlining calls (whose name stacks are
  relative to the call's); appends one step per primitive. ``env`` maps variables to
  fields, ``owners`` to parameter arrays."""
  for eqn in jaxpr.eqns:
    path = prefix + _module_path(eqn.source_info.name_stack, root)
    ins = [_read(env, a) for a in eqn.invars]
    sub = _call_jaxpr(eqn)
    if sub is not None:
      inner = {v: x for v, x in zip(sub.invars, ins)}
      inner_owners = {v: owners[a] for v, a in zip(sub.invars, eqn.invars)
                      if not isinstance(a, jex_core.Literal) and a in owners}
      _walk(sub, inner, inner_owners, path, steps, constants=constants)
      outs = [_read(inner, v) for v in sub.outvars]
    else:
      try:
        outs = _transfer(eqn, ins)
      except _Lost as e:
        where = "/".join(path) or "the model's top level"
        outs = [Unknown(f"{e} ({eqn.primitive.name} in {where})")] * len(eqn.outvars)
      macs = _eqn_macs(eqn, constants) + sum(_jaxpr_macs(s, constants)
                                             for s in _subjaxprs(eqn))
      params = 0
      for a in eqn.invars:
        owner = None if isinstance(a, jex_core.Literal) else owners.get(a)
        if owner is not None and not owner.used:
          owner.used = True
          params += owner.count
      steps.append(_Step(path, eqn, ins, outs[0] if outs else None, macs, params))
    for v, x in zip(eqn.outvars, outs):
      env[v] = x


# ----------------------------------------------------------------------- the report


@dataclasses.dataclass(frozen=True)
class Layer:
  """One convolution, matrix product, pool, flatten or global pool, in program order."""
  path: str  # module path below the model ("conv5_3"); "" for the model's own code
  op: str  # "conv 3x3/1", "max_pool 2x2/2", "dense", "matmul", "global_pool", ...
  shape: tuple[int, ...]  # output shape, batch included
  macs: int
  field: Value


@dataclasses.dataclass(frozen=True)
class Stage:
  """The equations of one module (at the chosen depth), or a pool between modules."""
  name: str
  shape: tuple[int, ...]  # shape of the stage's last image-dependent output
  params: int
  macs: int
  field: Value  # at that output


@dataclasses.dataclass(frozen=True)
class Report:
  """What ``analyze`` finds: totals, the stage table, the layer list."""
  input_shape: tuple[int, ...]
  params: int  # all of the model's parameters
  unused_params: int  # parameters this forward pass never reads (e.g. training-only heads)
  macs: int
  stages: tuple[Stage, ...]
  layers: tuple[Layer, ...]
  outputs: tuple[Value, ...]  # the fields of the model's outputs (flattened)

  def layer(self, path: str, op: str = "") -> Layer:
    """The last layer at module ``path`` whose op starts with ``op``."""
    found = [l for l in self.layers if l.path == path and l.op.startswith(op)]
    if not found:
      raise KeyError(f"no layer {op!r} at {path!r}; paths: "
                     f"{sorted({l.path for l in self.layers})}")
    return found[-1]


def _changes_field(step: _Step) -> bool:
  """True where the output's field differs from every input's (a pool, a flatten...)."""
  if not isinstance(step.out, Field):
    return isinstance(step.out, Unknown) and not any(isinstance(v, Unknown)
                                                     for v in step.ins)
  def key(f: Field) -> tuple:
    return tuple((d.axis is None, d.size, d.jump) for d in f.dims)

  return all(not isinstance(v, Field) or key(v) != key(step.out) for v in step.ins)


def _sizes(values) -> str:
  """"2" for equal strides (2, 2), "1x2" otherwise."""
  values = list(values)
  return str(values[0]) if len(set(values)) == 1 else "x".join(map(str, values))


def _layer_op(step: _Step) -> str | None:
  """How a step is listed among the layers, or None when it is not a layer."""
  eqn, name = step.eqn, step.eqn.primitive.name
  if name == "conv_general_dilated":
    p = eqn.params
    rspec = p["dimension_numbers"].rhs_spec
    kshape = _shape(eqn.invars[1])
    k = "x".join(str(kshape[a]) for a in rspec[2:])
    op = f"conv {k}/{_sizes(p['window_strides'])}"
    groups = p["feature_group_count"]
    if groups > 1:
      op += " dw" if kshape[rspec[1]] == 1 else f" g{groups}"
    if any(d != 1 for d in p["rhs_dilation"]):
      op += " dil" + "x".join(str(d) for d in p["rhs_dilation"])
    return op
  if name == "dot_general":
    return "dense" if None in step.ins else "matmul"
  if not _changes_field(step):
    return None
  if isinstance(step.out, Unknown):
    return f"? {name}"
  if name in _POOLS:
    p = eqn.params
    axes = sorted({d.axis for d in step.ins[0].dims if d.axis is not None})
    k = "x".join(str(p["window_dimensions"][a]) for a in axes)
    return f"{_POOLS[name]} {k}/{_sizes(p['window_strides'][a] for a in axes)}"
  if name in _REDUCTIONS:
    return "global_pool"
  if name in ("reshape", "squeeze"):
    return "flatten"
  return name


def _format_path(path: tuple[str, ...]) -> str:
  return "/".join(path)


def _stages(steps: list[_Step], depth: int) -> list[Stage]:
  """Consecutive steps of one module path (cut at ``depth``) form a stage.

  Steps of an enclosing scope (the activation between two modules, a block's residual
  add) join the stage before them, except layers (a pool, a flatten, a functional
  conv): those open a stage of their own, named after the op.
  """
  groups: list[tuple[str, list[_Step]]] = []
  key = None
  for step in steps:
    k = step.path[:depth]
    enclosing = key is not None and len(k) < len(key) and key[:len(k)] == k
    op = _layer_op(step) if (enclosing or not k) else None
    if k == key or (enclosing and op is None):
      groups[-1][1].append(step)
      continue
    if op is not None:
      name = _format_path(k + (step.eqn.primitive.name if op.startswith("?") else op,))
      key = k + ("",)  # no module has this path: the next module opens a new stage
    else:
      name, key = _format_path(k) or "(top)", k
    groups.append((name, [step]))
  out = []
  for name, group in groups:
    last = next((s for s in reversed(group) if s.out is not None), group[-1])
    shape = _shape(last.eqn.outvars[0]) if last.eqn.outvars else ()
    out.append(Stage(name, shape, sum(s.params for s in group),
                     sum(s.macs for s in group), last.out))
  return out


def analyze(model, input_shape: tuple[int, ...], depth: int = 1) -> Report:
  """Parameters, multiply-adds and receptive fields of ``model`` on ``input_shape``.

  ``input_shape`` is NHWC; pass a batch of 1 for per-image MACs. Stages are the
  modules ``depth`` levels below the model (1: its direct submodules).
  """
  closed, variables = _trace(model, input_shape)
  jaxpr = closed.jaxpr
  leaves = jax.tree_util.tree_leaves_with_path(variables)
  owners = {}
  for var, (path, leaf) in zip(jaxpr.invars, leaves):
    if getattr(path[0], "key", None) == "params":
      owners[var] = _Params(math.prod(leaf.shape))
  env: dict = {jaxpr.invars[len(leaves)]: Field((Dim(1, 1, 1), Dim(2, 1, 1)))}
  steps: list[_Step] = []
  _walk(jaxpr, env, owners, (), steps, root=type(model).__name__,
        constants=_constants(jaxpr))
  layers = tuple(
      Layer(_format_path(s.path), op, _shape(s.eqn.outvars[0]), s.macs, s.out)
      for s in steps if (op := _layer_op(s)) is not None)
  params = sum(o.count for o in owners.values())
  return Report(
      input_shape=tuple(input_shape), params=params,
      unused_params=sum(o.count for o in owners.values() if not o.used),
      macs=sum(s.macs for s in steps), stages=tuple(_stages(steps, depth)),
      layers=layers, outputs=tuple(_read(env, v) for v in jaxpr.outvars))
