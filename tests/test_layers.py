"""models/layers.py: the blocks shared by several families."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from models import layers


def test_drop_path_drops_whole_examples_at_the_rate():
  """Each example's branch is either all zeros or scaled by 1/(1-p); the dropped share
  is p within 3 sigma (Binomial(4000, 0.2): sigma 0.0063)."""
  x = jnp.ones((4000, 3, 3, 4))
  y = np.asarray(layers.DropPath(0.2).apply({}, x, deterministic=False,
                                            rngs={"dropout": jax.random.key(0)}))
  per_example = y.reshape(4000, -1)
  dropped = np.all(per_example == 0, axis=1)
  kept = np.all(np.isclose(per_example, 1 / 0.8), axis=1)
  assert np.all(dropped | kept)
  assert abs(dropped.mean() - 0.2) < 3 * 0.0063
  assert abs(y.mean() - 1.0) < 0.03  # unbiased in expectation


def test_drop_path_is_identity_in_eval_and_at_rate_zero():
  x = jax.random.normal(jax.random.key(1), (8, 4))
  np.testing.assert_array_equal(layers.DropPath(0.5).apply({}, x, deterministic=True), x)
  np.testing.assert_array_equal(
      layers.DropPath(0.0).apply({}, x, deterministic=False), x)  # needs no rng
  with pytest.raises(ValueError, match="rate"):
    layers.drop_path(x, 1.0, jax.random.key(0))


def test_drop_path_rates_rise_linearly_over_all_blocks():
  rates = layers.drop_path_rates(0.3, (2, 1, 3))
  assert [len(r) for r in rates] == [2, 1, 3]
  flat = [r for stage in rates for r in stage]
  np.testing.assert_allclose(flat, np.linspace(0, 0.3, 6))
  assert layers.drop_path_rates(0.1, (1,)) == [[0.0]]


def test_layer_scale_starts_at_init_value():
  x = jnp.full((2, 5), 3.0)
  variables = layers.LayerScale(1e-6).init(jax.random.key(0), x)
  np.testing.assert_array_equal(variables["params"]["gamma"], np.full(5, 1e-6, np.float32))
  np.testing.assert_allclose(layers.LayerScale(1e-6).apply(variables, x), 3e-6, rtol=1e-6)


def test_squeeze_excite_gates_channels_from_global_context():
  x = jax.random.normal(jax.random.key(0), (2, 6, 6, 32))
  se = layers.SqueezeExcite(reduction=16)
  variables = se.init(jax.random.key(1), x)
  shapes = jax.tree.map(np.shape, variables["params"])
  assert shapes == {"fc1": {"kernel": (1, 1, 32, 2), "bias": (2,)},
                    "fc2": {"kernel": (1, 1, 2, 32), "bias": (32,)}}
  y = se.apply(variables, x)
  gate = y / x  # one gate per (example, channel), in (0, 1), the same at every pixel
  np.testing.assert_allclose(gate, gate[:, :1, :1, :] * np.ones_like(gate), rtol=1e-4)
  assert np.all((gate > 0) & (gate < 1))
  # The gate depends on the global average only: shuffling pixels leaves it unchanged.
  perm = jax.random.permutation(jax.random.key(2), 36)
  shuffled = x.reshape(2, 36, 32)[:, perm].reshape(2, 6, 6, 32)
  gate2 = se.apply(variables, shuffled) / shuffled
  np.testing.assert_allclose(gate2[:, 0, 0], gate[:, 0, 0], rtol=1e-4)


def test_make_norm_kinds():
  x = jax.random.normal(jax.random.key(0), (4, 3, 3, 8)) * 5 + 2
  ln = layers.make_norm("layer", train=True)()
  y = ln.apply(ln.init(jax.random.key(0), x), x)
  np.testing.assert_allclose(np.mean(y, -1), 0, atol=1e-5)  # over channels only
  bn = layers.make_norm("batch", train=True)()
  y, _ = bn.apply(bn.init(jax.random.key(0), x), x, mutable=["batch_stats"])
  np.testing.assert_allclose(np.mean(y, (0, 1, 2)), 0, atol=1e-5)  # per channel
  with pytest.raises(ValueError, match="unknown norm"):
    layers.make_norm("instance", train=True)


def test_make_divisible_rounds_to_multiples_without_losing_10_percent():
  assert layers.make_divisible(32 * 0.75) == 24
  assert layers.make_divisible(1280 * 1.4) == 1792
  assert layers.make_divisible(16 * 0.35) == 8
  assert layers.make_divisible(100, 8) == 104
  assert layers.make_divisible(11, 8) == 16  # 8 would lose more than 10%


def test_activations_by_name():
  x = jnp.array([-7.0, -1.0, 0.0, 2.0, 8.0])
  np.testing.assert_allclose(layers.get_activation("relu6")(x), [0, 0, 0, 2, 6])
  np.testing.assert_allclose(layers.get_activation("gelu")(x),
                             jax.nn.gelu(x, approximate=False))
  with pytest.raises(ValueError, match="unknown activation"):
    layers.get_activation("swishh")


@pytest.mark.parametrize("window,stride,pad,ceil_mode,size", [
    (2, 2, 0, False, 27),  # airbench's, on an odd map (the last row is dropped)
    (2, 2, 0, False, 8),   # VGG's
    (3, 3, 0, False, 10),
    (2, 2, 0, True, 9),    # ceil mode: the last window half padding
    (2, 2, 1, False, 7),   # padded
    (2, 3, 0, False, 11),  # gaps between the windows: those elements get nothing
])
def test_max_pool_gradient_goes_to_each_windows_first_maximum(window, stride, pad, ceil_mode,
                                                              size):
  """Non-overlapping windows: the written-out gradient equals select-and-scatter's (XLA's
  own pool, ``_reduce_max``) exactly, on inputs full of ties (three levels) where
  splitting a tie, or giving it to the last maximum, would differ."""
  x = jax.random.randint(jax.random.key(0), (2, size, size + 1, 3), 0, 3).astype(jnp.float32)
  padding = layers.pool_padding(x.shape, window, stride, pad, ceil_mode)
  pool = lambda x: layers.max_pool(x, window, stride, pad, ceil_mode)
  ref = lambda x: layers._reduce_max(x, window, stride, padding)
  g = jax.random.normal(jax.random.key(1), ref(x).shape)
  np.testing.assert_array_equal(pool(x), ref(x))
  ours, = jax.vjp(pool, x)[1](g)
  theirs, = jax.vjp(ref, x)[1](g)
  np.testing.assert_array_equal(ours, theirs)
  # Each window passes its whole gradient on, to one element: nothing is split or lost.
  np.testing.assert_allclose(float(ours.sum()), float(g.sum()), rtol=1e-5)


def test_max_pool_stays_a_reduce_window_for_the_model_report():
  """models' analysis reads pools from the program: the forward must stay one
  reduce_window_max (inside the custom gradient's call)."""
  jaxpr = str(jax.make_jaxpr(lambda x: layers.max_pool(x, 2, 2))(jnp.zeros((1, 4, 4, 1))))
  assert "reduce_window_max" in jaxpr
  assert "select_and_scatter" not in str(jax.make_jaxpr(jax.grad(
      lambda x: layers.max_pool(x, 2, 2).sum()))(jnp.zeros((1, 4, 4, 1))))
