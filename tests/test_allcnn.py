"""All-CNN-C and model C (models/allcnn.py)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from models import create_model
from tests.model_testing import abstract_init, count_params


_abstract = abstract_init


@pytest.mark.parametrize("name,count", [("allcnn_c", 1_369_738),
                                        ("allcnn_c_maxpool", 954_730)])
def test_parameter_counts(name, count):
  params = _abstract(create_model(name, num_classes=10), (1, 32, 32, 3))["params"]
  assert count_params(params) == count


def test_strided_convs_replace_the_pools():
  conv = _abstract(create_model("allcnn_c", num_classes=10), (1, 32, 32, 3))["params"]
  pool = _abstract(create_model("allcnn_c_maxpool", num_classes=10), (1, 32, 32, 3))["params"]
  assert len(conv) == len(pool) + 2
  # The two extra layers are 3x3 convs that keep the width (96 and 192 filters).
  assert conv["conv3"]["kernel"].shape == (3, 3, 96, 96)
  assert conv["conv6"]["kernel"].shape == (3, 3, 192, 192)


@pytest.mark.parametrize("downsampling", ["conv", "maxpool"])
def test_final_map_is_6x6_before_averaging(downsampling):
  model = create_model("allcnn_c", num_classes=10, downsampling=downsampling, width=4)
  x = jnp.zeros((1, 32, 32, 3))
  _, state = jax.eval_shape(
      lambda x: model.init_with_output(jax.random.key(0), x, train=False,
                                       capture_intermediates=True), x)
  last = max(k for k in state["intermediates"] if k.startswith("conv"))
  assert state["intermediates"][last]["__call__"][0].shape == (1, 6, 6, 10)


def test_final_relu_makes_scores_non_negative_and_dropout_only_in_training():
  model = create_model("allcnn_c", num_classes=10, width=4)
  x = jax.random.normal(jax.random.key(0), (4, 16, 16, 3))
  variables = model.init(jax.random.key(1), x, train=False)
  out = np.asarray(model.apply(variables, x, train=False))
  assert out.shape == (4, 10) and (out >= 0).all()
  raw = create_model("allcnn_c", num_classes=10, width=4, final_relu=False)
  assert (np.asarray(raw.apply(variables, x, train=False)) < 0).any()
  again = np.asarray(model.apply(variables, x, train=False))
  np.testing.assert_array_equal(out, again)
  trained = [np.asarray(model.apply(variables, x, train=True,
                                    rngs={"dropout": jax.random.key(s)})) for s in (0, 1)]
  assert not np.allclose(trained[0], trained[1])
