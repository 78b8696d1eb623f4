"""Device-resident batching: the whole dataset lives on the accelerator.

The trainer calls ``put_on_mesh`` once; every other function here is pure and
meant to run inside the compiled train/eval step, with sizes static and
indices traced, so the host never feeds batches:

    arrays = put_on_mesh(ds, mesh)
    steps = steps_per_epoch(len(ds.train_labels), batch_size)

    @jax.jit
    def train_step(state, arrays, epoch, step):          # epoch, step traced
      perm = epoch_permutation(key, epoch, num_train)     # cheap next to a step
      x, y = train_batch(arrays["train_images"], arrays["train_labels"], perm,
                         step, batch_size)
      ...

Training drops the last ``N % batch_size`` examples of each epoch's
permutation (different ones every epoch); evaluation pads the last batch and
masks the padding, so every test example counts exactly once.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from input_pipeline.datasets import ArrayDataset


def put_on_mesh(ds: ArrayDataset, mesh: Mesh) -> dict[str, jax.Array]:
  """Copies the dataset to every device of `mesh`, replicated.

  Replicated because each step gathers arbitrary rows; a data-parallel trainer
  shards the gathered batch instead (``jax.lax.with_sharding_constraint``).

  Returns:
    {'train_images', 'train_labels', 'test_images', 'test_labels'}: uint8
    images and int32 labels.
  """
  replicated = NamedSharding(mesh, PartitionSpec())
  host = {
      "train_images": np.asarray(ds.train_images, np.uint8),
      "train_labels": np.asarray(ds.train_labels, np.int32),
      "test_images": np.asarray(ds.test_images, np.uint8),
      "test_labels": np.asarray(ds.test_labels, np.int32),
  }
  # From a callback rather than device_put, so that it also builds a global array in a
  # multi-process run (every process has loaded the same small dataset).
  return {k: jax.make_array_from_callback(v.shape, replicated, lambda idx, v=v: v[idx])
          for k, v in host.items()}


def epoch_permutation(key: jax.Array, epoch: jax.Array | int,
                      num_examples: int) -> jax.Array:
  """int32 permutation of range(num_examples), a function of (key, epoch)."""
  perm = jax.random.permutation(jax.random.fold_in(key, epoch), num_examples)
  return perm.astype(jnp.int32)


def steps_per_epoch(num_examples: int, batch_size: int) -> int:
  """Full training batches per epoch; the remainder is skipped that epoch."""
  if not 0 < batch_size <= num_examples:
    raise ValueError(f"batch_size {batch_size} must be in [1, {num_examples}] "
                     "(the number of training examples)")
  return num_examples // batch_size


def train_indices(perm: jax.Array, step_in_epoch: jax.Array | int,
                  batch_size: int) -> jax.Array:
  """perm[step_in_epoch * batch_size:][:batch_size]: the training examples of the step.

  `step_in_epoch` must be below ``steps_per_epoch``: ``dynamic_slice`` clamps
  a start past the end, which would silently repeat the last full batch.
  """
  start = jnp.asarray(step_in_epoch, jnp.int32) * batch_size
  return jax.lax.dynamic_slice(perm, (start,), (batch_size,))


def take_rows(images: jax.Array, labels: jax.Array,
              idx: jax.Array) -> tuple[jax.Array, jax.Array]:
  """Rows ``idx`` of images and labels."""
  # Indices come from a permutation, so clipping never triggers; it only
  # spares the gather the out-of-bounds fill path.
  return (jnp.take(images, idx, axis=0, mode="clip"),
          jnp.take(labels, idx, axis=0, mode="clip"))


def train_batch(images: jax.Array, labels: jax.Array, perm: jax.Array,
                step_in_epoch: jax.Array | int,
                batch_size: int) -> tuple[jax.Array, jax.Array]:
  """Rows ``train_indices(perm, step_in_epoch, batch_size)`` of images and labels."""
  return take_rows(images, labels, train_indices(perm, step_in_epoch, batch_size))


def num_eval_batches(num_examples: int, batch_size: int) -> int:
  """ceil(num_examples / batch_size): the last batch is padded and masked."""
  return -(-num_examples // batch_size)


def eval_batch(images: jax.Array, labels: jax.Array, batch_index: jax.Array | int,
               batch_size: int) -> tuple[jax.Array, jax.Array, jax.Array]:
  """Rows batch_index * batch_size + arange(batch_size), padded and masked.

  Returns:
    (images, labels, mask): rows past the end repeat the last example and have
    mask False, so summing masked metrics over ``num_eval_batches`` batches
    counts every example exactly once.
  """
  n = images.shape[0]
  idx = jnp.asarray(batch_index, jnp.int32) * batch_size + jnp.arange(
      batch_size, dtype=jnp.int32)
  mask = idx < n
  idx = jnp.minimum(idx, n - 1)
  return jnp.take(images, idx, axis=0), jnp.take(labels, idx, axis=0), mask
