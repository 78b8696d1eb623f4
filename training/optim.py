"""Optimizers and learning-rate schedules from the config, through optax.

Weight decay applies to convolution and dense kernels only: biases (the untied biases of
LeNet-1989 too) and norm scales are left alone, as in every modern recipe.

Also here, the recipe pieces that act on the optimizer: the linear learning-rate scaling
rule (``learning_rate`` per ``lr_base_batch_size`` images, Goyal et al. 2017), gradient
clipping, and layer-wise learning-rate decay (BEiT / ConvNeXt fine-tuning), which scales
each parameter's update by ``layer_decay ** (num_layers + 1 - layer_id)``. The layer ids
are the model family's: each family declares them next to its module
(``models.layer_groups(name)``, as timm's ``group_matcher``).
"""

from __future__ import annotations

import fnmatch
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import optax

import models
from training import sdlm

OPTIMIZERS = ("sgd", "adam", "adamw", "lamb", "rmsprop", "sdlm", "muon")
COUPLED_L2 = ("sgd", "adam", "rmsprop", "sdlm", "muon")  # muon: its SGD part
SCHEDULES = ("constant", "step", "cosine", "linear")


def peak_learning_rate(config: ml_collections.ConfigDict) -> float:
  """The learning rate after the linear scaling rule.

  ``lr_base_batch_size = 0``: ``learning_rate`` is used as given. Otherwise it is the
  rate for a batch of ``lr_base_batch_size`` and scales linearly with ``batch_size``
  (ConvNeXt: 4e-3 per 4096; ResNet: 0.1 per 256), so ``--config.batch_size`` alone moves
  both.
  """
  if not config.get("lr_base_batch_size"):
    return config.learning_rate
  return config.learning_rate * config.batch_size / config.lr_base_batch_size


def decay_mask(params: Any) -> Any:
  """True for leaves that get weight decay: those named ``kernel``."""
  def is_kernel(path, _):
    last = path[-1]
    return getattr(last, "key", getattr(last, "name", None)) == "kernel"
  return jax.tree_util.tree_map_with_path(is_kernel, params)


def decay_factors(config: ml_collections.ConfigDict) -> tuple[float, ...]:
  """The step schedule's factor at each of ``decay_epochs``: ``decay_factors`` when
  given (one per boundary, e.g. LeNet-5's 5e-4, 2e-4, 1e-4, 5e-5, 1e-5), else
  ``decay_factor`` at every one."""
  factors = tuple(config.get("decay_factors", ()) or ())
  if not factors:
    return (config.decay_factor,) * len(config.decay_epochs)
  if min(factors) <= 0:
    raise ValueError(f"config.decay_factors={factors} must all be positive (the rate is "
                     "multiplied by each)")
  if len(factors) != len(config.decay_epochs):
    raise ValueError(f"config.decay_factors has {len(factors)} factors for "
                     f"{len(config.decay_epochs)} decay_epochs; give one per boundary "
                     "(or none, for decay_factor at each)")
  return factors


def create_schedule(config: ml_collections.ConfigDict,
                    steps_per_epoch: int) -> optax.Schedule:
  """Linear warm-up (optional) followed by a constant, step, cosine or linear schedule.

  ``cosine`` and ``linear`` both end at ``min_learning_rate``; ``linear`` is the modern
  LeNet-1989 reproduction's decay (karpathy/lecun1989-repro: 3e-4 to 1e-4 over 80 passes).
  """
  lr = peak_learning_rate(config)
  total = config.num_epochs * steps_per_epoch
  warmup = int(round(config.warmup_epochs * steps_per_epoch))
  if config.schedule == "constant":
    main = optax.constant_schedule(lr)
  elif config.schedule == "step":
    factors = decay_factors(config)
    boundaries = {int(round(e * steps_per_epoch)) - warmup: f
                  for e, f in zip(config.decay_epochs, factors)}
    main = optax.piecewise_constant_schedule(lr, boundaries)
  elif config.schedule == "cosine":
    main = optax.cosine_decay_schedule(lr, max(total - warmup, 1),
                                       alpha=config.min_learning_rate / lr if lr else 0.0)
  elif config.schedule == "linear":
    main = optax.linear_schedule(lr, config.min_learning_rate, max(total - warmup, 1))
  else:
    raise ValueError(f"unknown schedule {config.schedule!r}; use one of {SCHEDULES}")
  if warmup <= 0:
    return main
  ramp = optax.linear_schedule(0.0, lr, warmup)
  return optax.join_schedules([ramp, main], [warmup])


def create_optimizer(config: ml_collections.ConfigDict, schedule: optax.Schedule,
                     steps_per_epoch: int = 1) -> optax.GradientTransformation:
  """SGD (momentum, Nesterov) with L2 decay, Adam with L2 decay, AdamW, LAMB, RMSProp
  (TensorFlow's, with L2 decay), stochastic diagonal Levenberg-Marquardt (the LeNets'
  ``sdlm``, whose curvature estimate the training loop refreshes each pass, with L2
  decay), or Muon for the convolution filters and SGD for the rest (``muon``,
  :func:`muon_filters`); optionally after clipping the gradients' global norm to
  ``config.grad_clip_norm`` (ViT: 1.0), and with layer-wise learning-rate decay when
  ``config.layer_decay`` is set (with the layer groups that ``config.model``'s family
  declares; :class:`LayerDecayError` if it declares none), and with the parameters that
  ``config.lr_mults`` names stepped at a multiple of the rate (:func:`scale_by_parameter`)
  and those that ``config.freeze`` names held fixed (:func:`freeze`; ``steps_per_epoch``
  converts its epochs to steps)."""
  tx = _base_optimizer(config, schedule)
  if config.get("grad_clip_norm"):
    tx = optax.chain(optax.clip_by_global_norm(config.grad_clip_norm), tx)
  if config.get("layer_decay"):
    tx = optax.chain(tx, scale_by_layer(config.layer_decay, model_layer_ids(config.model)))
  if config.get("lr_mults"):
    tx = optax.chain(tx, scale_by_parameter(config.lr_mults))
  if config.get("freeze"):
    anneal = (schedule, peak_learning_rate(config)) if config.get("freeze_anneal") else None
    tx = optax.chain(tx, freeze(config.freeze, steps_per_epoch, anneal))
  elif config.get("freeze_anneal"):
    raise ParameterSpecError("config.freeze_anneal anneals the parameters that "
                             "config.freeze names, and it names none; set config.freeze "
                             "(e.g. whiten/bias:3) or drop freeze_anneal")
  return tx


def _base_optimizer(config: ml_collections.ConfigDict,
                    schedule: optax.Schedule) -> optax.GradientTransformation:
  name, wd, wd_mults = config.optimizer, config.weight_decay, config.get("wd_mults", "")
  if wd_mults and name not in COUPLED_L2:
    raise ParameterSpecError(f"config.wd_mults scales coupled L2 decay ({', '.join(COUPLED_L2)}"
                             f"), and optimizer {name!r} decays its weights its own way; "
                             "drop wd_mults or use one of those")

  def coupled_l2(tx):  # classic L2: the decay is added to the gradient, before the step
    if wd_mults:
      return optax.chain(add_decay_by_parameter(wd, wd_mults), tx)
    return optax.chain(optax.add_decayed_weights(wd, decay_mask), tx) if wd else tx

  if name == "sgd":
    return coupled_l2(optax.sgd(schedule, momentum=config.momentum or None,
                                nesterov=config.nesterov))
  if name == "adam":
    return coupled_l2(optax.adam(schedule, b1=config.b1, b2=config.b2, eps=config.eps))
  if name == "rmsprop":
    # TensorFlow 1's RMSProp, as the MobileNet and Inception papers trained: eps inside
    # the square root, the mean square starting at 1, momentum applied after the rate.
    return coupled_l2(optax.rmsprop(schedule, decay=config.rms_decay, eps=config.eps,
                                    initial_scale=1.0, eps_in_sqrt=True,
                                    momentum=config.momentum or None))
  if name == "adamw":
    return optax.adamw(schedule, b1=config.b1, b2=config.b2, eps=config.eps,
                       weight_decay=wd, mask=decay_mask)
  if name == "sdlm":  # LeCun et al. 1998, Appendix C (training/sdlm.py)
    return coupled_l2(sdlm.sdlm(schedule, mu=config.sdlm.mu))
  if name == "muon":  # Jordan 2024, as airbench94_muon trains (muon_filters)
    return optax.partition(
        {"filters": muon_filters(config, schedule),
         "rest": coupled_l2(optax.sgd(schedule, momentum=config.momentum or None,
                                      nesterov=config.nesterov))},
        filter_labels)
  if name == "lamb":  # You et al. 2019: AdamW's step, rescaled per layer by a trust ratio.
    return optax.lamb(schedule, b1=config.b1, b2=config.b2, eps=config.eps,
                      weight_decay=wd, mask=decay_mask)
  raise ValueError(f"unknown optimizer {name!r}; use one of {OPTIMIZERS}")


# ----------------------------------------------------------------------------
# Muon for the convolution filters.


def filter_labels(params: Any) -> Any:
  """"filters" for the convolution kernels: leaves named ``kernel`` of rank 3 or more
  (Flax's ``(kh, kw, in, out)``), as airbench94_muon gives Muon the parameters with
  ``len(p.shape) == 4``; "rest" for dense kernels (the classifier, fully connected
  layers), biases (LeNet-1989's untied ones too, of rank 3) and norm scales."""
  kernels = decay_mask(params)
  return jax.tree.map(lambda p, k: "filters" if k and p.ndim >= 3 else "rest",
                      params, kernels)


def filter_dimension_numbers(params: Any) -> Any:
  """Each filter bank as the matrix that Muon orthogonalises: the kernel taps and input
  channels reduced, the output channels out (PyTorch's ``g.reshape(len(g), -1)``)."""
  return jax.tree.map(
      lambda p: optax.contrib.MuonDimensionNumbers(tuple(range(p.ndim - 1)), p.ndim - 1),
      params)


def normalize_filters() -> optax.GradientTransformation:
  """airbench94_muon's step rescales each filter bank to Frobenius norm sqrt(out
  channels) before the update is added (``p.mul_(len(p)**0.5 / p.norm())``). As an
  optax update: ``u + (c - 1) p``, with ``c = sqrt(out) / ||p||``. With BatchNorm after
  every convolution the scale of a filter bank does not change the function, so this
  only fixes the size of Muon's step relative to the weights."""

  def update_fn(updates, state, params=None):
    if params is None:
      raise ValueError("normalize_filters needs the parameters")

    def rescale(u, p):
      c = jnp.sqrt(p.shape[-1]) / jnp.maximum(jnp.linalg.norm(p), 1e-12)
      return u + (c - 1) * p
    return jax.tree.map(rescale, updates, params), state

  return optax.GradientTransformation(lambda _: optax.EmptyState(), update_fn)


def muon_filters(config: ml_collections.ConfigDict,
                 schedule: optax.Schedule) -> optax.GradientTransformation:
  """Muon (Jordan 2024; optax.contrib's ``scale_by_muon``): momentum ``muon.beta``
  (Nesterov if ``muon.nesterov``), orthogonalised by ``muon.ns_steps`` Newton-Schulz
  iterations, then a step of ``muon.learning_rate`` that follows the config's schedule
  (its rate at each step times ``muon.learning_rate`` over the peak rate), decoupled
  weight decay ``muon.weight_decay`` (times that step), and with ``muon.normalize`` the
  filters rescaled as airbench94_muon does (:func:`normalize_filters`). The other
  parameters take the config's SGD (``learning_rate``, ``momentum``, ``nesterov``,
  ``weight_decay``), as airbench94_muon's biases and classifier do."""
  m = config.muon
  peak = peak_learning_rate(config)
  rate = lambda step: schedule(step) * (m.learning_rate / peak)  # peak > 0: validated
  tx = [optax.contrib.scale_by_muon(ns_steps=m.ns_steps, beta=m.beta, nesterov=m.nesterov,
                                     weight_dimension_numbers=filter_dimension_numbers)]
  if m.weight_decay:
    tx.append(optax.add_decayed_weights(m.weight_decay))
  tx.append(optax.scale_by_learning_rate(rate))
  if m.normalize:
    tx.append(normalize_filters())
  return optax.chain(*tx)


# ----------------------------------------------------------------------------
# Layer-wise learning-rate decay.


class LayerDecayError(ValueError):
  """A model whose family declares no layer groups."""


def model_layer_ids(model: str) -> models.LayerIds:
  """The layer assignment of ``model``'s family (``models.layer_groups``): top-level
  parameter names -> (layer id of each, number of layers L).

  Raises:
    LayerDecayError: the family declares none (e.g. LeNet, VGG).
  """
  layer_ids = models.layer_groups(model)
  if layer_ids is None:
    raise LayerDecayError(f"model {model!r} has no layer groups for layer-wise learning-rate "
                          "decay (its family declares none); set --config.layer_decay=0")
  return layer_ids


def layer_scales(params: Any, decay: float, layer_ids: models.LayerIds) -> Any:
  """The learning-rate multiplier of every parameter: ``decay ** (L + 1 - layer_id)``."""
  ids, num_layers = layer_ids(list(params))
  return {name: jax.tree.map(lambda _, s=decay ** (num_layers + 1 - ids[name]): s, sub)
          for name, sub in params.items()}


def scale_each(scales_of) -> optax.GradientTransformation:
  """Multiplies each update by its parameter's scale: ``scales_of(tree)`` gives a tree of
  the same structure, a number per parameter or None (left as it is). It is called on the
  parameters when the state is made (so its errors come then) and on the updates when the
  step is traced."""

  def init_fn(params):
    scales_of(params)
    return optax.EmptyState()

  def update_fn(updates, state, params=None):
    del params
    return _with_values(lambda u, s: u * s, updates, scales_of(updates)), state

  return optax.GradientTransformation(init_fn, update_fn)


def scale_by_layer(decay: float, layer_ids: models.LayerIds) -> optax.GradientTransformation:
  """Multiplies each update by its layer's rate (the last transform of the chain, so the
  learning rate and decoupled weight decay are both scaled, as in BEiT and ConvNeXt)."""
  return scale_each(lambda tree: layer_scales(tree, decay, layer_ids))


# ----------------------------------------------------------------------------
# Per-parameter settings: frozen parameters and learning-rate multipliers.


class ParameterSpecError(ValueError):
  """A ``freeze`` or ``lr_mults`` entry that is malformed or names no parameter; the
  message starts with the config field."""


def parameter_path(path: tuple[Any, ...]) -> str:
  """A parameter's key path as ``a/b/kernel``."""
  return jax.tree_util.keystr(path, simple=True, separator="/")


def parse_parameter_spec(field: str, spec: str,
                         default: float | None = None) -> dict[str, float]:
  """``"whiten/kernel, */norm*/bias:64"`` -> ``{"whiten/kernel": default, "*/norm*/bias":
  64.0}``: comma-separated entries, each a parameter pattern and optionally ``:value``
  (a number >= 0; required where there is no ``default``)."""
  entries = {}
  for entry in filter(None, (e.strip() for e in spec.split(","))):
    pattern, colon, value = entry.rpartition(":")
    if not colon:
      pattern, value = value, ""
    pattern, value = pattern.strip().strip("/"), value.strip()
    if not colon and default is None:
      raise ParameterSpecError(f"config.{field}: {entry!r} needs a value, e.g. {pattern}:2")
    try:
      entries[pattern] = float(value) if colon else default
    except ValueError:
      raise ParameterSpecError(f"config.{field}: {entry!r}: the value after ':' must be a "
                               f"number, e.g. {pattern}:2") from None
    if not entries[pattern] >= 0:
      raise ParameterSpecError(f"config.{field}: {entry!r}: the value must be >= 0")
  return entries


def parameter_values(field: str, entries: dict[str, float], params: Any) -> Any:
  """Each parameter's value from the entry that names it, or None where none does. A
  pattern names a parameter whose path it matches (``fnmatch``: ``*`` spans ``/``) or
  whose path it is a prefix of, ending at a ``/``. An entry that names no parameter, or
  a parameter that two entries name, is an error."""
  paths = [parameter_path(p) for p, _ in jax.tree_util.tree_flatten_with_path(params)[0]]

  def named(pattern, path):
    return fnmatch.fnmatchcase(path, pattern) or fnmatch.fnmatchcase(path, pattern + "/*")

  for pattern in entries:
    if not any(named(pattern, p) for p in paths):
      tops = ", ".join(dict.fromkeys(p.split("/")[0] for p in paths))
      raise ParameterSpecError(f"config.{field}: {pattern!r} names no parameter; parameter "
                               f"paths are like {paths[0]}, under {tops}")

  def value(path, _):
    found = [e for e in entries if named(e, parameter_path(path))]
    if len(found) > 1:
      raise ParameterSpecError(f"config.{field}: {parameter_path(path)} is named by "
                               f"{found[0]!r} and {found[1]!r}; name each parameter once")
    return entries[found[0]] if found else None
  return jax.tree_util.tree_map_with_path(value, params)


def _with_values(fn, updates, values):
  return jax.tree.map(lambda u, v: u if v is None else fn(u, v), updates, values)


def freeze(spec: str, steps_per_epoch: int,
           anneal: tuple[optax.Schedule, float] | None = None) -> optax.GradientTransformation:
  """Zeroes the final update of the parameters that ``spec`` names (``pattern[:E]``,
  comma-separated) from the start, or after E epochs, so that they keep their values (as
  airbench's whitening filters, set from the data and never trained, and its whitening
  bias, trained for the first 3 epochs). The last transform of the chain: weight decay
  and every optimizer's step are held off too.

  With ``anneal = (schedule, peak)`` (``config.freeze_anneal``) a parameter that trains
  for its first E epochs does so at a rate that falls linearly from ``peak`` to 0 over
  those epochs, in place of the run's ``schedule``: its update is multiplied by
  ``peak * (1 - step / S) / schedule(step)`` (S = E epochs in steps; 0 where the schedule
  is 0). airbench94_muon's whitening bias: rate ``0.053 * (1 - step / S)`` for S = 3 of
  the 8 epochs, where the other biases' falls over all 8."""
  entries = parse_parameter_spec("freeze", spec, default=0.0)

  def init_fn(params):
    parameter_values("freeze", entries, params)  # the names checked when the state is made
    return optax.ScaleByScheduleState(count=jnp.zeros([], jnp.int32))

  def update_fn(updates, state, params=None):
    del params
    epochs = parameter_values("freeze", entries, updates)
    count = state.count

    def held(u, e):
      steps = round(e * steps_per_epoch)
      if anneal is not None and steps:
        schedule, peak = anneal
        rate = jnp.asarray(schedule(count), jnp.float32)
        own = peak * (1.0 - count.astype(jnp.float32) / steps)
        u = u * jnp.where(rate > 0, own / jnp.where(rate > 0, rate, 1.0), 0.0).astype(u.dtype)
      return jnp.where(count < steps, u, jnp.zeros_like(u))

    updates = _with_values(held, updates, epochs)
    return updates, optax.ScaleByScheduleState(count=optax.safe_increment(count))

  return optax.GradientTransformation(init_fn, update_fn)


def add_decay_by_parameter(weight_decay: float, spec: str) -> optax.GradientTransformation:
  """Coupled L2 with a multiplier per parameter: adds ``weight_decay * m * p`` to each
  gradient, where m is the value of the ``spec`` entry (``pattern:m``, comma-separated;
  ``config.wd_mults``, big_vision's name) that names the parameter, and for the others 1
  on kernels and 0 elsewhere (``weight_decay`` alone). So biases and norm parameters can
  decay too: airbench94_muon decays each group at its summed-loss ``wd / lr``, on the
  mean loss ``2e-6 / lr``: the classifier at 2.99e-6 and the biases at 12.6 times that."""
  entries = parse_parameter_spec("wd_mults", spec)

  def init_fn(params):
    parameter_values("wd_mults", entries, params)  # the names checked when the state is made
    return optax.EmptyState()

  def update_fn(updates, state, params=None):
    if params is None:
      raise ValueError("add_decay_by_parameter needs the parameters")
    mults = parameter_values("wd_mults", entries, params)

    def add(u, p, m, kernel):
      m = float(kernel) if m is None else m
      return u + (weight_decay * m) * p if weight_decay * m else u
    return jax.tree.map(add, updates, params, mults, decay_mask(params)), state

  return optax.GradientTransformation(init_fn, update_fn)


def scale_by_parameter(spec: str) -> optax.GradientTransformation:
  """Multiplies the final update of the parameters that ``spec`` names (``pattern:m``,
  comma-separated) by m: their learning rate times m (as airbench94's BatchNorm biases,
  x64; big_vision's ``lr_mults``). With coupled L2 (sgd, adam, rmsprop) their decay's
  step is scaled with it; decoupled decay too."""
  entries = parse_parameter_spec("lr_mults", spec)
  return scale_each(lambda tree: parameter_values("lr_mults", entries, tree))
