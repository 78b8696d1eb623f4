"""Stochastic diagonal Levenberg-Marquardt (LeCun et al. 1998, Appendix C).

The optimizer both LeNets were trained with. The 1989 paper calls it a "positive,
diagonal approximation of the Hessian"; the 1998 paper gives it in full. Each weight
gets its own step size

    eps_k = eta / (mu + h_kk),

where ``h_kk`` estimates the second derivative of the per-pattern loss with respect to
weight ``k`` and ``mu`` (0.02 in the paper) keeps the step bounded where the curvature is
small. Two approximations make ``h_kk`` cheap and positive:

* Gauss-Newton: second derivatives of the activation functions are dropped, so the
  loss's curvature is propagated back through squared first derivatives only, and it can
  never be negative.
* Diagonal: off-diagonal terms are dropped at every layer. A unit's curvature is then
  back-propagated like a gradient with every local derivative squared
  (``d2E/da_i2 = f'(a_i)^2 sum_k w_ki^2 d2E/da_k2``), and a connection from input
  ``x_j`` gets ``d2E/da_i2 x_j^2``. A shared weight sums this over all the connections
  that share it (the paper's Appendix C: a shared weight's second derivative is the sum
  over its connections, with the cross terms dropped), not the square of a sum.

:func:`diagonal_gauss_newton` computes exactly that for any JAX function, by running its
program (jaxpr) backwards with squared local derivatives: elementwise operations
contribute their squared partial derivatives, contractions (convolutions, matrix
products) their cotangent map at squared operands, and data movement (reshapes, slices,
gathers, pooling sums, maxima) their ordinary cotangent map, whose coefficients are 0 or
1 and so equal their squares. So the estimate works for every model of the zoo, the
LeNets' partial connection tables and RBF output included, without per-layer code.

The paper re-estimates the diagonal "on 500 samples before each training pass" and
keeps it fixed for the pass; its running average ``h <- (1 - gamma) h + gamma h_p`` over
those samples is, with ``gamma = 1/p``, their mean, which is what we compute (one batch
of ``num_samples`` patterns). The output's curvature is the diagonal of the loss's
Hessian with respect to the outputs (mean squared error: ``2 / outputs``;
softmax cross-entropy: ``p (1 - p)``), clipped at 0. The estimate runs the model in
evaluation mode (no dropout; BatchNorm with its running statistics) on the training
images after the run's training augmentation.

The schedule of ``eta`` is the config's (LeNet-5: 5e-4 for 2 passes, 2e-4 for 3, 1e-4
for 3, 5e-5 for 4, then 1e-5). The paper updated after every pattern; configs/lenet5.py
says why it takes the paper's eta per update of a batch of 16 instead.

Usage: ``--config.optimizer=sdlm`` (``config.sdlm.mu``, ``config.sdlm.num_samples``);
train.py calls the estimate at the start of every pass.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import optax
from jax.extend import core as jex_core

from training import config as config_lib

Array = jax.Array


class SDLMState(NamedTuple):
  """``hessian``: the current estimate of ``h_kk`` for every parameter (zeros until the
  first estimate); ``count``: updates so far (for the schedule)."""
  count: Array
  hessian: Any


def sdlm(learning_rate: optax.ScalarOrSchedule, mu: float = 0.02
         ) -> optax.GradientTransformation:
  """``update = -eta_t * g / (mu + h)`` with ``h`` the state's diagonal estimate.

  The estimate is not made here: the training loop puts it into the state with
  :func:`set_hessian` before each pass (it needs a batch of data). Until then ``h`` is 0
  and the step is ``eta / mu`` times the gradient.
  """
  if mu <= 0:
    raise ValueError(f"sdlm: mu must be positive, got {mu}")

  def init_fn(params):
    return SDLMState(count=jnp.zeros((), jnp.int32),
                     hessian=jax.tree.map(jnp.zeros_like, params))

  def update_fn(updates, state, params=None):
    del params
    eta = learning_rate(state.count) if callable(learning_rate) else learning_rate
    updates = jax.tree.map(lambda g, h: (-eta * g / (mu + h)).astype(g.dtype),
                           updates, state.hessian)
    return updates, SDLMState(count=optax.safe_increment(state.count),
                              hessian=state.hessian)

  return optax.GradientTransformation(init_fn, update_fn)


def set_hessian(opt_state: Any, hessian: Any) -> Any:
  """``opt_state`` (possibly a chain) with its SDLM estimate replaced by ``hessian``."""
  found = optax.tree_utils.tree_get(opt_state, "hessian")
  if found is None:
    raise ValueError("set_hessian: the optimizer state holds no SDLM estimate")
  return optax.tree_utils.tree_set(opt_state, hessian=hessian)


def get_hessian(opt_state: Any) -> Any:
  return optax.tree_utils.tree_get(opt_state, "hessian")


def curvature_stats(opt_state: Any, mu: float) -> dict[str, Array]:
  """The estimate's smallest and largest ``h`` over all parameters, and the fraction of
  parameters whose ``h`` is below ``mu`` (their step is about ``eta / mu``, the gradient
  step, whatever the curvature)."""
  leaves = jax.tree.leaves(get_hessian(opt_state))
  size = sum(x.size for x in leaves)
  return {"h_min": jnp.min(jnp.stack([jnp.min(x) for x in leaves])),
          "h_max": jnp.max(jnp.stack([jnp.max(x) for x in leaves])),
          "below_mu": sum(jnp.sum(x < mu) for x in leaves) / size}


def rate_range(eta: float, stats: dict[str, Any], mu: float) -> dict[str, float]:
  """The effective step sizes ``eta / (mu + h)`` of :func:`curvature_stats`' estimate: the
  paper quotes them for LeNet-5's first pass ("between approximately 7e-5 and 0.016")."""
  stats = jax.device_get(stats)
  return {"sdlm_rate_min": eta / (mu + float(stats["h_max"])),
          "sdlm_rate_max": eta / (mu + float(stats["h_min"])),
          "sdlm_h_below_mu": float(stats["below_mu"])}


# ----------------------------------------------------------------------------
# The diagonal Gauss-Newton estimate, for any function.

# Elementwise: the squared partial derivative of each operand, from a JVP.
_ELEMENTWISE = frozenset("""
    abs add add_any atan2 cbrt clamp convert_element_type copy copy_p cos cosh div erf
    erf_inv erfc exp exp2 expm1 integer_pow log log1p logistic max min mul neg pow
    reduce_precision rsqrt select_n sign sin sinh sqrt square sub tan tanh
""".split())
# Bilinear in their operands: the cotangent map evaluated at squared operands.
_CONTRACTIONS = frozenset(("dot_general", "conv_general_dilated"))
# Data movement and sums: coefficients are 0 or 1, so the ordinary cotangent map.
_STRUCTURAL = frozenset("""
    broadcast_in_dim concatenate cumsum dynamic_slice dynamic_update_slice expand_dims
    gather pad reduce_max reduce_min reduce_sum reduce_window_max reduce_window_min
    reduce_window_sum reshape rev scatter scatter-add scatter_add select_and_gather_add
    slice split squeeze stack transpose
""".split())
# Calls of inner programs, run backwards recursively.
_CALL_JAXPR_PARAMS = ("jaxpr", "call_jaxpr", "fun_jaxpr")


class UnsupportedPrimitive(NotImplementedError):
  """An operation with no diagonal Gauss-Newton rule."""


def _is_float(x) -> bool:
  return jnp.issubdtype(jnp.result_type(x), jnp.inexact)


def _inner_jaxpr(eqn) -> jex_core.ClosedJaxpr | None:
  for name in _CALL_JAXPR_PARAMS:
    inner = eqn.params.get(name)
    if inner is None:
      continue
    if isinstance(inner, jex_core.ClosedJaxpr):
      return inner
    if isinstance(inner, jex_core.Jaxpr):
      return jex_core.ClosedJaxpr(inner, ())
  return None


def _bind(eqn, invals):
  with eqn.ctx.manager:
    out = eqn.primitive.bind(*invals, **eqn.primitive.get_bind_params(eqn.params))
  return out if eqn.primitive.multiple_results else [out]


def _sum_to(x: Array, shape: tuple[int, ...]) -> Array:
  """``x`` summed down to ``shape`` (an operand that was broadcast, e.g. a scalar)."""
  if x.shape == tuple(shape):
    return x
  x = x.sum(axis=tuple(range(x.ndim - len(shape))))
  axes = tuple(i for i, (a, b) in enumerate(zip(x.shape, shape)) if b == 1 and a != 1)
  return x.sum(axis=axes, keepdims=True).reshape(shape)


def _backward_eqn(eqn, invals, h_out):
  """Curvatures of the float operands of ``eqn`` given those of its outputs."""
  name = eqn.primitive.name
  floats = [i for i, v in enumerate(invals) if _is_float(v)]
  result = [None] * len(invals)
  if not floats:
    return result
  inner = _inner_jaxpr(eqn)
  if inner is not None:
    consts_and_args = invals
    h_in = _backward_jaxpr(inner, consts_and_args, h_out)
    return h_in

  def call(*fvals):
    vals = list(invals)
    for i, v in zip(floats, fvals):
      vals[i] = v
    return _bind(eqn, vals)

  fvals = [invals[i] for i in floats]
  if name in _ELEMENTWISE:
    (h,) = h_out
    for j, i in enumerate(floats):
      tangents = [jnp.zeros_like(v) for v in fvals]
      tangents[j] = jnp.ones_like(fvals[j])
      _, (partial,) = jax.jvp(call, fvals, tangents)
      result[i] = _sum_to(jnp.square(partial) * h, jnp.shape(invals[i]))
    return result
  if name in _CONTRACTIONS:
    _, vjp = jax.vjp(call, *[jnp.square(v) for v in fvals])
  elif name in _STRUCTURAL:
    _, vjp = jax.vjp(call, *fvals)
  else:
    raise UnsupportedPrimitive(
        f"diagonal Gauss-Newton: no rule for the operation {name!r}; add it to "
        "training/sdlm.py (elementwise, contraction or data movement)")
  for i, h in zip(floats, vjp(list(h_out))):
    result[i] = h
  return result


def _backward_jaxpr(closed: jex_core.ClosedJaxpr, args: Sequence[Any],
                    h_outs: Sequence[Any]) -> list[Any]:
  """Runs ``closed`` forward, then its outputs' curvatures ``h_outs`` backwards with
  squared local derivatives; returns the curvatures of ``args`` (None for non-floats)."""
  jaxpr = closed.jaxpr
  env: dict[Any, Any] = {}

  def read(v):
    return v.val if isinstance(v, jex_core.Literal) else env[v]

  for v, val in zip(jaxpr.constvars, closed.consts):
    env[v] = val
  for v, val in zip(jaxpr.invars, args):
    env[v] = val
  for eqn in jaxpr.eqns:
    outs = _bind(eqn, [read(v) for v in eqn.invars])
    for v, val in zip(eqn.outvars, outs):
      env[v] = val

  curv: dict[Any, Any] = {}

  def add(v, h):
    if h is None or isinstance(v, jex_core.Literal):
      return
    curv[v] = h if v not in curv else curv[v] + h

  for v, h in zip(jaxpr.outvars, h_outs):
    add(v, h)
  for eqn in reversed(jaxpr.eqns):
    h_out = [curv.get(v) for v in eqn.outvars]
    if all(h is None for h in h_out):
      continue
    outvals = [read(v) for v in eqn.outvars]
    if not any(_is_float(o) for o, h in zip(outvals, h_out) if h is not None):
      continue
    h_out = [jnp.zeros_like(o) if h is None else h for o, h in zip(outvals, h_out)]
    invals = [read(v) for v in eqn.invars]
    for v, h in zip(eqn.invars, _backward_eqn(eqn, invals, h_out)):
      add(v, h)
  return [curv.get(v) if _is_float(env[v]) else None for v in jaxpr.invars]


def diagonal_gauss_newton(fn: Callable[..., Array], args: Sequence[Any],
                          h_out: Array) -> list[Any]:
  """LeCun's diagonal Gauss-Newton curvature of every argument of ``fn``.

  Args:
    fn: a function of ``args`` (pytrees) returning one array.
    args: its arguments.
    h_out: the curvature of the loss with respect to each element of ``fn``'s output
      (same shape), e.g. the diagonal of the loss's Hessian in the outputs.

  Returns:
    One pytree per argument, shaped like it: the curvature of each element, summed over
    everything that uses it (a shared weight: over its connections; a batch: over its
    patterns). Zeros where an argument does not reach the output.
  """
  flat, treedef = jax.tree.flatten(list(args))
  closed = jax.make_jaxpr(lambda *xs: fn(*jax.tree.unflatten(treedef, xs)))(*flat)
  (out,) = closed.out_avals
  if jnp.shape(h_out) != out.shape:  # a broadcast here would sum curvatures across patterns
    raise ValueError(f"diagonal_gauss_newton: h_out has shape {jnp.shape(h_out)}, the "
                     f"function's output {out.shape}; give one curvature per output element")
  h = _backward_jaxpr(closed, flat, [jnp.asarray(h_out, jnp.result_type(h_out))])
  h = [jnp.zeros_like(x) if c is None else c.astype(jnp.result_type(x))
       for x, c in zip(flat, h)]
  return jax.tree.unflatten(treedef, h)


def make_curvature_step(model, loss: str, train_ops: Sequence[Any], base_rng: Array,
                        curvature: str = "loss", map_j: float | None = None) -> Callable:
  """Returns ``curvature_step(state, images, labels) -> state``: the SDLM estimate on one
  batch of raw training images (the paper's 500 patterns), stored in the optimizer state.

  The images get the run's training augmentation (``train_ops``, drawn from ``base_rng``
  and the step), then the model runs in evaluation mode; the estimate is the mean over
  the batch of each pattern's diagonal Gauss-Newton curvature.

  ``curvature``: ``"loss"``, the training loss's Hessian diagonal at the outputs,
  propagated back through the whole network; or ``"rbf_mle"`` (LeNet-5 only), the
  curvature of the paper's MLE criterion ``y_D = sum_j (x_j - w_Dj)^2`` (its eq. 8) with
  respect to F6's state x, exactly 2 per unit whatever the class, propagated back from
  F6. ``map_j`` (the MAP criterion's constant j) enters the first only. The first
  collapses as the network grows confident (softmax: ``p (1 - p) -> 0``); the second
  does not.
  """
  if curvature not in config_lib.CHOICES["sdlm.curvature"]:
    raise ValueError(f"sdlm curvature must be one of "
                     f"{config_lib.CHOICES['sdlm.curvature']}, got {curvature!r}")
  from input_pipeline import augment  # pylint: disable=g-import-not-at-top
  from training import losses  # pylint: disable=g-import-not-at-top

  def per_pattern_loss(outputs, label):
    return losses.per_example_loss(loss, outputs[None], label[None], map_j=map_j)[0]

  def curvature_step(state, images, labels):
    rng = jax.random.fold_in(base_rng, state.step)
    x, _ = augment.apply_ops(rng, images, train_ops, labels)
    stats = {"batch_stats": state.batch_stats} if state.batch_stats else {}

    def outputs_of(params, x):
      return model.apply({"params": params, **stats}, x, train=False).astype(jnp.float32)

    if curvature == "rbf_mle":
      def rbf_input(params, x):
        _, sown = model.apply({"params": params, **stats}, x, train=False,
                              mutable=["intermediates"])
        if "rbf_input" not in sown.get("intermediates", {}):
          raise ValueError("sdlm.curvature='rbf_mle' needs a network with LeNet-5's RBF "
                           "output (model=lenet5); use sdlm.curvature='loss'")
        return sown["intermediates"]["rbf_input"][0].astype(jnp.float32)

      f6 = jax.eval_shape(rbf_input, state.params, x)  # its shape: d2(y_D)/dx2 = 2
      h = diagonal_gauss_newton(rbf_input, [state.params, x], jnp.full(f6.shape, 2.0))[0]
    else:
      outputs = outputs_of(state.params, x)
      h_out = jax.vmap(lambda y, t: jnp.maximum(
          jnp.diagonal(jax.hessian(per_pattern_loss)(y, t)), 0.0))(outputs, labels)
      h = diagonal_gauss_newton(outputs_of, [state.params, x], h_out)[0]
    n = images.shape[0]
    h = jax.tree.map(lambda a: a / n, h)
    return state.replace(opt_state=set_hessian(state.opt_state, h))

  return curvature_step
