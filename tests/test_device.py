"""Tests for input_pipeline/device.py; everything but put_on_mesh under jit."""

import collections
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from input_pipeline import ArrayDataset
from input_pipeline import epoch_permutation
from input_pipeline import eval_batch
from input_pipeline import num_eval_batches
from input_pipeline import put_on_mesh
from input_pipeline import steps_per_epoch
from input_pipeline import train_batch


def _dataset(n_train=23, n_test=17):
  # Each image is filled with its own index, so rows can be identified.
  def images(n):
    return np.broadcast_to(np.arange(n, dtype=np.uint8)[:, None, None, None],
                           (n, 3, 3, 1)).copy()
  return ArrayDataset(
      name="tiny", train_images=images(n_train),
      train_labels=np.arange(n_train, dtype=np.int32),
      test_images=images(n_test), test_labels=np.arange(n_test, dtype=np.int32) % 5,
      num_classes=n_train, mean=(0.5,), std=(0.25,), flip=False)


def test_put_on_mesh_replicates():
  ds = _dataset()
  mesh = Mesh(np.array(jax.devices()[:1]), ("data",))
  arrays = put_on_mesh(ds, mesh)
  assert set(arrays) == {"train_images", "train_labels", "test_images", "test_labels"}
  for name, array in arrays.items():
    assert isinstance(array, jax.Array)
    assert array.sharding == NamedSharding(mesh, PartitionSpec())
    np.testing.assert_array_equal(array, getattr(ds, name))
  assert arrays["train_images"].dtype == jnp.uint8
  assert arrays["test_labels"].dtype == jnp.int32


def test_epoch_permutation():
  perm = jax.jit(epoch_permutation, static_argnums=2)
  key = jax.random.key(0)
  p0, p0_again, p1 = perm(key, 0, 23), perm(key, jnp.int32(0), 23), perm(key, 1, 23)
  assert p0.dtype == jnp.int32
  np.testing.assert_array_equal(np.sort(p0), np.arange(23))
  np.testing.assert_array_equal(np.sort(p1), np.arange(23))
  np.testing.assert_array_equal(p0, p0_again)
  assert not np.array_equal(p0, p1)


def test_train_batch_returns_permuted_rows():
  ds = _dataset()
  batch_size = 5
  perm = epoch_permutation(jax.random.key(1), 3, 23)
  fn = jax.jit(train_batch, static_argnums=4)
  seen = []
  for step in range(steps_per_epoch(23, batch_size)):
    x, y = fn(ds.train_images, ds.train_labels, perm, jnp.int32(step), batch_size)
    expected = np.asarray(perm)[step * batch_size:(step + 1) * batch_size]
    np.testing.assert_array_equal(y, expected)
    np.testing.assert_array_equal(x[:, 0, 0, 0], expected)
    assert x.shape == (batch_size, 3, 3, 1) and x.dtype == jnp.uint8
    seen.extend(np.asarray(y).tolist())
  assert len(set(seen)) == len(seen) == 20  # No repeats; 23 % 5 skipped.


def test_steps_per_epoch():
  assert steps_per_epoch(23, 5) == 4
  with pytest.raises(ValueError):
    steps_per_epoch(3, 5)


def test_eval_batches_cover_every_example_once():
  ds = _dataset()
  batch_size = 5
  n = len(ds.test_labels)
  assert num_eval_batches(n, batch_size) == 4
  assert num_eval_batches(15, 5) == 3
  fn = jax.jit(eval_batch, static_argnums=3)
  total, labels, rows = 0, collections.Counter(), []
  for i in range(num_eval_batches(n, batch_size)):
    x, y, mask = fn(ds.test_images, ds.test_labels, jnp.int32(i), batch_size)
    assert x.shape == (batch_size, 3, 3, 1) and mask.dtype == jnp.bool_
    mask = np.asarray(mask)
    total += int(mask.sum())
    labels.update(np.asarray(y)[mask].tolist())
    rows.extend(np.asarray(x)[mask, 0, 0, 0].tolist())
  assert total == n
  assert labels == collections.Counter(ds.test_labels.tolist())
  assert rows == list(range(n))


def test_masked_eval_metric_under_jit():
  """A whole masked-accuracy loop compiled at once counts each example once."""
  ds = _dataset()
  batch_size = 4
  n = len(ds.test_labels)

  @functools.partial(jax.jit, static_argnums=2)
  def correct_count(images, labels, batch_size):
    def body(i, acc):
      _, y, mask = eval_batch(images, labels, i, batch_size)
      return acc + jnp.sum((y == 0) & mask)
    return jax.lax.fori_loop(0, num_eval_batches(n, batch_size), body, 0)

  assert int(correct_count(ds.test_images, ds.test_labels, batch_size)) == int(
      (ds.test_labels == 0).sum())
