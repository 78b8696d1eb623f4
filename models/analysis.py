"""What a model costs: multiply-adds, counted from its traced program.

``count_macs`` traces ``model.apply`` to a jaxpr (no compilation, no weights: the
variables are abstract) and adds up the multiply-accumulates of every convolution and
matrix product. That is the convention of the papers' "FLOPs" columns (ResNet-50: 4.1G,
ConvNeXt-T: 4.5G at 224x224) and of fvcore, which the ConvNeXt authors used: norms,
activations, pooling and additions are not counted.
"""

from __future__ import annotations

import math
from typing import Any, Iterator

import jax
import jax.numpy as jnp
from jax.extend import core as jex_core


def _subjaxprs(eqn) -> Iterator[Any]:
  for param in eqn.params.values():
    items = param if isinstance(param, (tuple, list)) else (param,)
    for item in items:
      if isinstance(item, jex_core.ClosedJaxpr):
        yield item.jaxpr
      elif isinstance(item, jex_core.Jaxpr):
        yield item


def _eqn_macs(eqn) -> int:
  name = eqn.primitive.name
  if name == "conv_general_dilated":
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


def _jaxpr_macs(jaxpr) -> int:
  total = 0
  for eqn in jaxpr.eqns:
    total += _eqn_macs(eqn)
    for sub in _subjaxprs(eqn):
      # A loop body runs several times; no model here traces to a loop, so refuse
      # rather than guess.
      if eqn.primitive.name in ("while", "scan"):
        raise NotImplementedError("count_macs does not count inside loops")
      total += _jaxpr_macs(sub)
  return total


def count_macs(model, input_shape: tuple[int, ...], train: bool = False) -> int:
  """Multiply-accumulates of one forward pass of ``model`` on ``input_shape`` (NHWC).

  Pass a batch of 1 for the per-image figure the papers quote.
  """
  x = jax.ShapeDtypeStruct(tuple(input_shape), jnp.float32)
  variables = jax.eval_shape(
      lambda x: model.init(jax.random.key(0), x, train=False), x)

  def forward(variables, x):
    return model.apply(variables, x, train=False)

  closed = jax.make_jaxpr(forward)(variables, x)
  return _jaxpr_macs(closed.jaxpr)
