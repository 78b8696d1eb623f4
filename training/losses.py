"""Per-example losses: softmax cross-entropy and the 1989 paper's squared error."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

LOSSES = ("cross_entropy", "mse")


def cross_entropy(logits: jax.Array, labels: jax.Array, label_smoothing: float = 0.0,
                  map_j: float | None = None) -> jax.Array:
  """Softmax cross-entropy with optional label smoothing; one value per example.

  ``labels`` are class indices (B,), or soft targets (B, classes) that Mixup / CutMix
  made (already smoothed there, so ``label_smoothing`` is not applied again).

  ``map_j``: LeNet-5's MAP criterion (LeCun et al. 1998, eq. 9), where the logits are the
  negative RBF penalties ``-y_i``: ``y_D + log(exp(-j) + sum_i exp(-y_i))``. That is the
  cross-entropy over the logits and one more, constant logit ``-j`` that is never the
  target; it stops pushing a wrong class's penalty up once it is well above ``j``, and
  keeps pulling the right class's penalty down while it is above ``j``. ``None``: plain
  cross-entropy (``j`` infinite).
  """
  if labels.ndim == logits.ndim:
    targets = labels.astype(logits.dtype)
  else:
    targets = jax.nn.one_hot(labels, logits.shape[-1], dtype=logits.dtype)
    if label_smoothing:
      targets = optax.smooth_labels(targets, label_smoothing)
  if map_j is not None:
    logits = with_map_logit(logits, map_j)
    targets = jnp.concatenate([targets, jnp.zeros((*targets.shape[:-1], 1),
                                                  targets.dtype)], axis=-1)
  return optax.softmax_cross_entropy(logits, targets)


def with_map_logit(logits: jax.Array, map_j: float) -> jax.Array:
  """``logits`` with the MAP criterion's constant logit ``-j`` appended as a last class
  (never a target; see ``cross_entropy``)."""
  return jnp.concatenate([logits, jnp.full((*logits.shape[:-1], 1), -map_j, logits.dtype)],
                         axis=-1)


def mse_pm1(outputs: jax.Array, labels: jax.Array) -> jax.Array:
  """Mean squared error against +1 for the true class and -1 elsewhere.

  LeCun et al. (1989) trained on squared error with +-1 targets and tanh outputs.
  The error is averaged over the output units (the common reproduction's convention;
  the paper's sum differs by a constant factor of 10 folded into the learning rate).
  """
  targets = 2.0 * jax.nn.one_hot(labels, outputs.shape[-1], dtype=outputs.dtype) - 1.0
  return jnp.mean(jnp.square(outputs - targets), axis=-1)


def per_example_loss(name: str, logits: jax.Array, labels: jax.Array,
                     label_smoothing: float = 0.0, map_j: float | None = None) -> jax.Array:
  if name == "cross_entropy":
    return cross_entropy(logits, labels, label_smoothing, map_j)
  if name == "mse":
    if labels.ndim == logits.ndim:
      raise ValueError("loss='mse' takes class labels; Mixup / CutMix need cross_entropy")
    if map_j is not None:
      raise ValueError("map_j is a term of the cross-entropy; loss='mse' has none")
    return mse_pm1(logits, labels)
  raise ValueError(f"unknown loss {name!r}; use one of {LOSSES}")
