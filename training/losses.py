"""Per-example losses: softmax cross-entropy and the 1989 paper's squared error."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

LOSSES = ("cross_entropy", "mse")


def cross_entropy(logits: jax.Array, labels: jax.Array,
                  label_smoothing: float = 0.0) -> jax.Array:
  """Softmax cross-entropy with optional label smoothing; one value per example.

  ``labels`` are class indices (B,), or soft targets (B, classes) that Mixup / CutMix
  made (already smoothed there, so ``label_smoothing`` is not applied again).
  """
  if labels.ndim == logits.ndim:
    return optax.softmax_cross_entropy(logits, labels.astype(logits.dtype))
  targets = jax.nn.one_hot(labels, logits.shape[-1], dtype=logits.dtype)
  if label_smoothing:
    targets = optax.smooth_labels(targets, label_smoothing)
  return optax.softmax_cross_entropy(logits, targets)


def mse_pm1(outputs: jax.Array, labels: jax.Array) -> jax.Array:
  """Mean squared error against +1 for the true class and -1 elsewhere.

  LeCun et al. (1989) trained on squared error with +-1 targets and tanh outputs.
  The error is averaged over the output units (the common reproduction's convention;
  the paper's sum differs by a constant factor of 10 folded into the learning rate).
  """
  targets = 2.0 * jax.nn.one_hot(labels, outputs.shape[-1], dtype=outputs.dtype) - 1.0
  return jnp.mean(jnp.square(outputs - targets), axis=-1)


def per_example_loss(name: str, logits: jax.Array, labels: jax.Array,
                     label_smoothing: float = 0.0) -> jax.Array:
  if name == "cross_entropy":
    return cross_entropy(logits, labels, label_smoothing)
  if name == "mse":
    if labels.ndim == logits.ndim:
      raise ValueError("loss='mse' takes class labels; Mixup / CutMix need cross_entropy")
    return mse_pm1(logits, labels)
  raise ValueError(f"unknown loss {name!r}; use one of {LOSSES}")
