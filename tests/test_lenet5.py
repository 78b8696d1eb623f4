"""LeNet-5 (models/lenet.py): the 1998 network's layers, table, RBF output and sliding
window, and the modern variant."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from models import create_model
from models.lenet import C3_TABLE, PartialConv, Subsampling, rbf_codes
from tests.model_testing import abstract_init, count_params


_abstract = abstract_init
_count = count_params


def test_lenet5_counts_match_the_paper_layer_by_layer():
  params = _abstract(create_model("lenet5", num_classes=10), (1, 32, 32, 1))["params"]
  per_layer = {name: _count(p) for name, p in params.items()}
  assert per_layer == {"C1": 156, "S2": 12, "C3": 1516, "S4": 32, "C5": 48120, "F6": 10164}
  assert sum(per_layer.values()) == 60_000


def test_modern_lenet5_count():
  params = _abstract(create_model("lenet5_modern", num_classes=10), (1, 28, 28, 1))["params"]
  assert {k: _count(v) for k, v in params.items()} == {
      "conv1": 520, "conv2": 25_050, "fc1": 400_500, "fc2": 5_010}
  assert _count(params) == 431_080


def test_modern_fc_activation_is_an_option_with_the_same_parameters():
  x = jax.random.normal(jax.random.key(0), (2, 28, 28, 1))
  relu = create_model("lenet5_modern", num_classes=10)
  tanh = create_model("lenet5_modern", num_classes=10, modern_conv_activation="tanh",
                      modern_fc_activation="tanh")
  v = _abstract(tanh, (1, 28, 28, 1))
  assert _count(v["params"]) == 431_080
  assert jax.eval_shape(lambda v, x: tanh.apply(v, x, train=False), v, x).shape == (2, 10)
  # Only fc 500's activation differs (the convs keep ReLU): the outputs must differ.
  fc_tanh = create_model("lenet5_modern", num_classes=10, modern_fc_activation="tanh")
  variables = relu.init(jax.random.key(1), x, train=False)
  assert not np.allclose(fc_tanh.apply(variables, x, train=False),
                         relu.apply(variables, x, train=False), atol=1e-3)
  with pytest.raises(ValueError, match="modern_fc_activation.*relu"):
    _abstract(create_model("lenet5_modern", num_classes=10, modern_fc_activation="rleu"),
              (1, 28, 28, 1))


def test_c3_table_is_the_papers_table_one():
  sizes = [len(m) for m in C3_TABLE]
  assert sizes == [3] * 6 + [4] * 9 + [6]
  # Every S2 map feeds exactly 10 of the 16 C3 maps (the rows of Table I).
  assert [sum(i in maps for maps in C3_TABLE) for i in range(6)] == [10] * 6
  # Maps 0-11 read contiguous (cyclic) runs; 12-14 do not.
  contiguous = lambda m: all((b - a) % 6 == 1 for a, b in zip(m, m[1:]))
  assert all(contiguous(m) for m in C3_TABLE[:12])
  assert not any(contiguous(m) for m in C3_TABLE[12:15])


def test_partial_conv_connects_only_the_table():
  layer = PartialConv(C3_TABLE, (5, 5))
  x = jnp.zeros((1, 9, 9, 6))
  variables = layer.init(jax.random.key(0), x)
  variables = jax.tree.map(lambda v: v, variables)
  variables["params"]["bias"] = jnp.zeros(16)
  for j in range(6):
    xj = x.at[0, :, :, j].set(1.0)
    out = np.asarray(layer.apply(variables, xj))[0]
    reached = {i for i in range(16) if np.abs(out[..., i]).max() > 0}
    assert reached == {i for i, maps in enumerate(C3_TABLE) if j in maps}, j


def test_subsampling_is_coefficient_times_sum_plus_bias():
  x = np.random.default_rng(0).normal(size=(2, 4, 6, 3)).astype(np.float32)
  variables = {"params": {"coef": jnp.array([0.5, -1.0, 2.0]),
                          "bias": jnp.array([0.1, 0.0, -0.3])}}
  out = np.asarray(Subsampling().apply(variables, jnp.asarray(x)))
  sums = x.reshape(2, 2, 2, 3, 2, 3).sum(axis=(2, 4))
  np.testing.assert_allclose(out, sums * [0.5, -1.0, 2.0] + [0.1, 0.0, -0.3], rtol=1e-5,
                             atol=1e-6)


def test_rbf_output_is_minus_squared_distance_to_fixed_codes():
  model = create_model("lenet5", num_classes=10)
  x = jax.random.normal(jax.random.key(1), (3, 32, 32, 1))
  variables = model.init(jax.random.key(0), x, train=False)
  logits, state = model.apply(variables, x, train=False,
                              capture_intermediates=lambda m, _: m.name == "F6")
  f6 = np.asarray(state["intermediates"]["F6"]["__call__"][0]).reshape(3, 84)
  f6 = 1.7159 * np.tanh(2.0 / 3.0 * f6)  # F6 is squashed before the RBF layer
  codes = np.asarray(rbf_codes(10))
  assert set(np.unique(codes)) == {-1.0, 1.0}
  expected = -((f6[:, None, :] - codes[None]) ** 2).sum(-1)
  np.testing.assert_allclose(np.asarray(logits), expected, rtol=1e-4, atol=1e-3)
  # The codes are fixed: not among the trainable parameters.
  assert all(v.size != codes.size for v in jax.tree.leaves(variables["params"]))


@pytest.mark.parametrize("name,size", [("lenet5", 32), ("lenet5_modern", 28)])
def test_sliding_window_on_a_wider_image(name, size):
  """Trained on size x size, applied to size x 2*size: a row of outputs, each equal to
  the network's output on the window at that position (the network's stride is 4)."""
  model = create_model(name, num_classes=10)
  wide = jax.random.normal(jax.random.key(2), (2, size, 2 * size, 1))
  variables = model.init(jax.random.key(0), wide[:, :, :size], train=False)
  row = np.asarray(model.apply(variables, wide, train=False))
  expected_columns = size // 4 + 1
  assert row.shape == (2, 1, expected_columns, 10)
  for k in (0, 3, expected_columns - 1):
    window = model.apply(variables, wide[:, :, 4 * k:4 * k + size], train=False)
    np.testing.assert_allclose(row[:, 0, k], np.asarray(window), rtol=1e-4, atol=1e-4)


def test_bf16_compute_keeps_float32_params():
  model = create_model("lenet5", num_classes=10, dtype=jnp.bfloat16)
  x = jnp.ones((1, 32, 32, 1))
  variables = model.init(jax.random.key(0), x, train=False)
  assert all(v.dtype == jnp.float32 for v in jax.tree.leaves(variables))
  assert model.apply(variables, x, train=False).dtype == jnp.bfloat16


@pytest.mark.parametrize("arg", [None, "sgd", "distort"])
def test_the_faithful_configs_feed_the_papers_input_levels(arg):
  # Sec. III.A: "the background level (white) corresponds to a value of -0.1 and the
  # foreground (black) corresponds to 1.175", whatever the dataset's own statistics.
  from configs import lenet5 as lenet5_config  # pylint: disable=g-import-not-at-top
  from training import data as data_lib  # pylint: disable=g-import-not-at-top
  c = lenet5_config.get_config(arg)
  info = data_lib.DataInfo("mnist", (32, 32, 1), 10, 60000, 10000, False, (0.1,), (0.3,))
  mean, std = data_lib.normalization_stats(c, info)
  levels = (np.array([0.0, 1.0]) - mean[0]) / std[0]
  np.testing.assert_allclose(levels, [-0.1, 1.175], rtol=1e-6)
  modern = lenet5_config.get_config("modern")
  assert data_lib.normalization_stats(modern, info) == ((0.1,), (0.3,))
