"""Checks that need several devices, run by tests/test_parallel.py in a subprocess with
``XLA_FLAGS=--xla_force_host_platform_device_count=4`` (the device count is fixed when
JAX starts, so the main test process cannot have them).

  XLA_FLAGS=--xla_force_host_platform_device_count=4 python tests/multidevice_checks.py ghost_bn [...]
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import flax.linen as nn  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402

from training import parallel  # noqa: E402
from training import steps as steps_lib  # noqa: E402


class ConvBN(nn.Module):
  """conv -> BatchNorm -> mean pool -> dense: the smallest net whose BN statistics matter."""

  @nn.compact
  def __call__(self, x, train: bool):
    x = nn.Conv(8, (3, 3), use_bias=False)(x)
    x = nn.BatchNorm(use_running_average=not train, momentum=0.5)(x)
    x = nn.relu(x).mean(axis=(1, 2))
    return nn.Dense(3)(x)


def _setup(batchnorm_stats: str, mesh):
  model, tx = ConvBN(), optax.sgd(1.0)  # plain SGD at lr 1: new params = params - grads
  state = steps_lib.init_state(model, tx, jax.random.key(0), (6, 6, 1))
  cfg = steps_lib.StepConfig.normalizing((0.0,), (1.0,), batchnorm_stats=batchnorm_stats)
  step = jax.jit(steps_lib.make_train_step(model, tx, cfg, jax.random.key(1), mesh=mesh))
  return model, state, step


def _reference(model, state, images, labels):
  """Loss gradients and updated BN statistics computed on ``images`` alone, on the host."""
  def loss_fn(params):
    out, upd = model.apply({"params": params, "batch_stats": state.batch_stats},
                           images.astype(jnp.float32) / 255.0, train=True,
                           mutable=["batch_stats"])
    return optax.softmax_cross_entropy_with_integer_labels(out, labels).mean(), upd
  (loss, upd), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
  return loss, grads, upd["batch_stats"]


def ghost_bn() -> None:
  """per_device BN = each device's examples normalised alone; global = the whole batch."""
  assert jax.device_count() == 4, jax.devices()
  mesh = parallel.create_mesh(fsdp=1)
  rng = np.random.default_rng(0)
  # Each device's 2 examples come from a different brightness, so the per-device and
  # global batch statistics are far apart.
  images = np.concatenate([rng.integers(20 * i, 20 * i + 60, (2, 6, 6, 1)) for i in range(4)])
  images = jnp.asarray(images.astype(np.uint8))
  labels = jnp.asarray(np.array([0, 1, 2, 0, 1, 2, 0, 1], np.int32))
  batch = jax.device_put((images, labels), parallel.batch_sharding(mesh))
  results = {}
  for mode in ("global", "per_device"):
    model, state, step = _setup(mode, mesh)
    new, metrics = step(state, steps_lib.zero_metrics(steps_lib.TRAIN_METRICS), *batch)
    results[mode] = (jax.device_get(new), float(metrics["loss"] / metrics["count"]))

  # global: the same as one big batch on the host.
  loss, grads, stats = _reference(model, state, images, labels)
  new, got_loss = results["global"]
  np.testing.assert_allclose(got_loss, loss, rtol=1e-5)
  for a, b, g in zip(jax.tree.leaves(new.params), jax.tree.leaves(state.params),
                     jax.tree.leaves(grads)):
    np.testing.assert_allclose(a, np.asarray(b) - np.asarray(g), rtol=1e-4, atol=1e-6)
  for a, b in zip(jax.tree.leaves(new.batch_stats), jax.tree.leaves(stats)):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)

  # per_device: each device's two examples on their own, then averaged.
  shards = [_reference(model, state, images[2 * i:2 * i + 2], labels[2 * i:2 * i + 2])
            for i in range(4)]
  mean = lambda trees: jax.tree.map(lambda *x: np.mean(np.stack(x), 0), *trees)
  grads_pd, stats_pd = mean([s[1] for s in shards]), mean([s[2] for s in shards])
  new, got_loss = results["per_device"]
  np.testing.assert_allclose(got_loss, np.mean([float(s[0]) for s in shards]), rtol=1e-5)
  for a, b, g in zip(jax.tree.leaves(new.params), jax.tree.leaves(state.params),
                     jax.tree.leaves(grads_pd)):
    np.testing.assert_allclose(a, np.asarray(b) - np.asarray(g), rtol=1e-4, atol=1e-6)
  for a, b in zip(jax.tree.leaves(new.batch_stats), jax.tree.leaves(stats_pd)):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)

  # And the two really differ: the global variance also holds the spread between the
  # devices' brightness levels, which each device alone never sees.
  assert abs(results["global"][1] - results["per_device"][1]) > 1e-3, results
  # (running var = 0.5 * 1 + 0.5 * batch var, with momentum 0.5 from its initial 1)
  batch_var = lambda r: 2 * np.asarray(r[0].batch_stats["BatchNorm_0"]["var"]) - 1
  var_global, var_device = batch_var(results["global"]), batch_var(results["per_device"])
  # Law of total variance: global = mean within-device variance + variance of the means.
  assert np.all(var_global >= var_device - 1e-6), (var_global, var_device)
  assert var_global.sum() > 1.2 * var_device.sum(), (var_global, var_device)
  print("ghost_bn ok")


def fsdp_shardings() -> None:
  """The rule splits big leaves over the fsdp axis and a jitted step keeps them split."""
  assert jax.device_count() == 4
  mesh = parallel.create_mesh(fsdp=2)
  assert dict(mesh.shape) == {"data": 2, "fsdp": 2}
  abstract = {"big": jax.ShapeDtypeStruct((3, 3, 64, 128), jnp.float32),
              "bias": jax.ShapeDtypeStruct((128,), jnp.float32)}
  sh = parallel.state_shardings(abstract, mesh)
  assert sh["big"].spec == jax.sharding.PartitionSpec(None, None, None, "fsdp")
  assert sh["bias"].spec == jax.sharding.PartitionSpec()
  x = jax.device_put(jnp.ones((3, 3, 64, 128)), sh["big"])
  # Each device holds half of the output channels.
  assert {s.data.shape for s in x.addressable_shards} == {(3, 3, 64, 64)}
  y = jax.jit(lambda a: a * 2, out_shardings=sh["big"])(x)
  assert y.sharding.spec == sh["big"].spec
  # A host pipeline's per-process share becomes one global, batch-split array.
  local = np.arange(8 * 3, dtype=np.float32).reshape(8, 3)
  batch = parallel.global_batch({"x": local}, mesh)["x"]
  assert batch.shape == (8, 3) and len(batch.addressable_shards) == 4
  np.testing.assert_array_equal(np.asarray(batch), local)
  assert parallel.process_slice(8) == slice(0, 8)
  print("fsdp_shardings ok")


if __name__ == "__main__":
  for name in sys.argv[1:]:  # several checks: one JAX start-up
    globals()[name]()
