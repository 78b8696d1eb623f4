"""LeCun (1989)'s five networks: exact counts, the locally connected layer, the config and
the study tool.

Counts go through jax.eval_shape (no compile); executed tests use tiny batches.
"""

from __future__ import annotations

import csv
import importlib.util
import math
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import models
from models import lecun1989_nets
from models.lecun1989_nets import LocallyConnected2D, connections
from models.lenet import UntiedBiasConv, lecun_uniform_init
from training import config as config_lib
from training import optim
from training import steps as steps_lib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHAPE = (2, 16, 16, 1)

# The paper's Table 1: (connections, free parameters), and per layer (params, connections).
PAPER = {1: (2570, 2570), 2: (3214, 3214), 3: (1226, 1226), 4: (2266, 1132),
         5: (5194, 1060)}
PER_LAYER = {
    1: {"out": (2570, 2570)},
    2: {"H1": (3084, 3084), "out": (130, 130)},
    3: {"H1": (640, 640), "H2": (416, 416), "out": (170, 170)},
    4: {"H1": (146, 1280), "H2": (816, 816), "out": (170, 170)},
    5: {"H1": (146, 1280), "H2": (264, 3264), "out": (650, 650)},
}


def _model(net: int, **kw):
  return models.create_model(f"lecun1989_net{net}", num_classes=10, **kw)


def _abstract_params(model, shape=SHAPE):
  x = jax.ShapeDtypeStruct(shape, jnp.float32)
  return jax.eval_shape(lambda x: model.init(jax.random.key(0), x, train=False), x)["params"]


def _count(tree) -> int:
  return sum(math.prod(x.shape) for x in jax.tree.leaves(tree))


def _key(seed: int) -> jax.Array:
  return jax.random.key(seed, impl="unsafe_rbg")  # initialises faster on CPU


# ----------------------------------------------------------------------------- counts


@pytest.mark.parametrize("net", sorted(PAPER))
def test_free_parameters_and_connections_match_paper(net):
  model = _model(net)
  params = _abstract_params(model)
  paper_connections, paper_params = PAPER[net]
  assert _count(params) == paper_params
  counted = connections(model)
  assert counted["total"] == paper_connections
  assert set(params) == set(PER_LAYER[net])
  for layer, (n_params, n_connections) in PER_LAYER[net].items():
    assert _count(params[layer]) == n_params, layer
    assert counted[layer] == n_connections, layer


def test_no_sharing_means_connections_equal_params():
  for net in (1, 2, 3):
    model = _model(net)
    assert connections(model)["total"] == _count(_abstract_params(model))
  # Sharing: a net with feature maps has fewer parameters than connections.
  for net in (4, 5):
    model = _model(net)
    assert connections(model)["total"] > _count(_abstract_params(model))


def test_untied_biases_and_shapes():
  p = _abstract_params(_model(5))
  assert p["H1"]["kernel"].shape == (3, 3, 1, 2) and p["H1"]["bias"].shape == (8, 8, 2)
  assert p["H2"]["kernel"].shape == (5, 5, 2, 4) and p["H2"]["bias"].shape == (4, 4, 4)
  p = _abstract_params(_model(4))
  assert p["H2"]["kernel"].shape == (4, 4, 5, 5, 2, 1) and p["H2"]["bias"].shape == (4, 4, 1)
  p = _abstract_params(_model(3))
  assert p["H1"]["kernel"].shape == (8, 8, 3, 3, 1, 1)


def test_registry_and_descriptions():
  assert {f"lecun1989_net{n}" for n in range(1, 6)} <= set(models.list_models())
  assert set(lecun1989_nets.DESCRIPTIONS) == set(lecun1989_nets.NETS)


@pytest.mark.parametrize("h1,h2", [("full", "local"), (None, "shared"), ("local", "full"),
                                   ("conv", None)])
def test_unsupported_wiring_is_an_error(h1, h2):
  with pytest.raises(ValueError, match="h2|h1"):
    _abstract_params(models.create_model("lecun1989_net5", num_classes=10, h1=h1, h2=h2))


# ------------------------------------------------------------- locally connected layer


def _naive_local(x, kernel, bias, stride, pad, pad_value):
  """out[n, i, j, f] = bias[i, j, f] + sum_{a, b, c} xp[n, i*sh + a, j*sw + b, c]
  * kernel[i, j, a, b, c, f], with xp the input padded by ``pad`` with ``pad_value``."""
  xp = np.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)), constant_values=pad_value)
  oh, ow, kh, kw, c, f = kernel.shape
  out = np.zeros((x.shape[0], oh, ow, f))
  for n in range(x.shape[0]):
    for i in range(oh):
      for j in range(ow):
        window = xp[n, i * stride[0]:i * stride[0] + kh, j * stride[1]:j * stride[1] + kw]
        for k in range(f):
          out[n, i, j, k] = bias[i, j, k] + np.sum(window * kernel[i, j, :, :, :, k])
  return out


def test_locally_connected_matches_naive_loop():
  # Non-square input, non-square window, different strides, several channels.
  layer = LocallyConnected2D(features=4, kernel_size=(3, 2), strides=(2, 1), padding=1,
                             pad_value=-0.5)
  rng = np.random.default_rng(0)
  x = rng.normal(size=(2, 7, 6, 3)).astype(np.float32)
  shapes = jax.eval_shape(lambda x: layer.init(jax.random.key(0), x), x)["params"]
  assert shapes["kernel"].shape == (4, 7, 3, 2, 3, 4)  # (7+2-3)//2+1, (6+2-2)//1+1
  assert shapes["bias"].shape == (4, 7, 4)
  kernel = rng.normal(size=shapes["kernel"].shape).astype(np.float32)
  bias = rng.normal(size=shapes["bias"].shape).astype(np.float32)
  y = layer.apply({"params": {"kernel": kernel, "bias": bias}}, x)
  expected = _naive_local(x, kernel, bias, (2, 1), 1, -0.5)
  np.testing.assert_allclose(np.asarray(y), expected, rtol=1e-5, atol=1e-5)


def test_locally_connected_with_tied_weights_is_the_shared_conv():
  """Copying one conv kernel to every position gives models/lenet.py's UntiedBiasConv,
  so net-3/4's H1 and H2 see exactly the windows that net-4/5's feature maps see."""
  rng = np.random.default_rng(1)
  x = rng.normal(size=(2, 8, 8, 2)).astype(np.float32)
  geo = dict(features=3, kernel_size=(5, 5), strides=(2, 2), padding=2, pad_value=-1.0)
  conv_kernel = rng.normal(size=(5, 5, 2, 3)).astype(np.float32)
  bias = rng.normal(size=(4, 4, 3)).astype(np.float32)
  shared = UntiedBiasConv(**geo).apply({"params": {"kernel": conv_kernel, "bias": bias}}, x)
  tied = np.broadcast_to(conv_kernel, (4, 4, 5, 5, 2, 3))
  local = LocallyConnected2D(**geo).apply({"params": {"kernel": tied, "bias": bias}}, x)
  np.testing.assert_allclose(np.asarray(local), np.asarray(shared), rtol=1e-5, atol=1e-5)


def test_locally_connected_init_is_per_unit_and_untied():
  layer = LocallyConnected2D(features=2, kernel_size=(3, 3), strides=(2, 2), padding=1,
                             kernel_init=lecun_uniform_init("fan_in"))
  x = jnp.zeros((1, 16, 16, 1))
  kernel = np.asarray(jax.jit(layer.init)(_key(0), x)["params"]["kernel"])
  assert kernel.shape == (8, 8, 3, 3, 1, 2)
  limit = 2.4 / 9  # fan-in of one unit: 3x3x1, not 8x8x3x3x1
  assert np.abs(kernel).max() <= limit and np.abs(kernel).max() > 0.8 * limit
  assert not np.allclose(kernel[0, 0], kernel[3, 5])  # every position its own weights


# ----------------------------------------------------------------------------- forward


def _random_params(model, seed=0):
  """Params with the model's shapes, numpy-random values: skips the (eager, slow) init."""
  rng = np.random.default_rng(seed)
  return {"params": jax.tree.map(lambda a: jnp.asarray(rng.normal(0, 0.3, a.shape), a.dtype),
                                 _abstract_params(model))}


def test_forward_shapes_activation_and_output_options():
  rng = np.random.default_rng(2)
  x = jnp.asarray(rng.uniform(-1, 1, SHAPE), jnp.float32)
  for net in range(1, 6):
    model = _model(net)
    y = model.apply(_random_params(model, net), x, train=False)
    assert y.shape == (2, 10) and y.dtype == jnp.float32
    assert np.all(np.abs(np.asarray(y)) < 1)  # tanh outputs
  variables = _random_params(_model(5))
  y = _model(5).apply(variables, x, train=False)
  scaled = _model(5, activation="scaled_tanh").apply(variables, x, train=False)
  assert not np.allclose(scaled, y)
  logits = _model(5, output_activation=None).apply(variables, x, train=False)
  np.testing.assert_allclose(np.tanh(np.asarray(logits)), np.asarray(y), rtol=1e-5, atol=1e-6)


def test_out_bias_init_and_bfloat16_compute():
  model = _model(2, out_bias_init=-1.0, dtype=jnp.bfloat16)
  x = jnp.zeros(SHAPE)
  variables = jax.jit(lambda k: model.init(k, x, train=False))(_key(0))
  np.testing.assert_array_equal(variables["params"]["out"]["bias"], -np.ones(10))
  assert all(v.dtype == jnp.float32 for v in jax.tree.leaves(variables))
  assert model.apply(variables, x, train=False).dtype == jnp.bfloat16


@pytest.mark.parametrize("net", [3, 5])
def test_one_sgd_step_lowers_the_loss_on_a_fixed_batch(net):
  model = _model(net, out_bias_init=-1.0)
  c = config_lib.load_config(f"{ROOT}/configs/lecun1989_nets.py:net={net}")
  tx = optim.create_optimizer(c, optim.create_schedule(c, 1))  # the config's SGD, lr 0.1
  state = jax.jit(lambda k: steps_lib.init_state(model, tx, k, SHAPE[1:]))(_key(0))
  cfg = steps_lib.StepConfig.normalizing((127.5,), (127.5,), loss="mse")
  step = jax.jit(steps_lib.make_train_step(model, tx, cfg, jax.random.key(1)))
  rng = np.random.default_rng(0)
  images = jnp.asarray(rng.integers(0, 256, (8, *SHAPE[1:]), dtype=np.uint8))
  labels = jnp.asarray(rng.integers(0, 10, 8).astype(np.int32))
  losses = []
  for _ in range(2):  # the loss is measured before each update
    state, acc = step(state, steps_lib.zero_metrics(steps_lib.TRAIN_METRICS), images, labels)
    losses.append(float(acc["loss"] / acc["count"]))
  assert losses[1] < losses[0], losses
  assert int(state.step) == 2


# ----------------------------------------------------------------------------- config


def test_config_args():
  path = f"{ROOT}/configs/lecun1989_nets.py"
  c = config_lib.load_config(path)
  assert c.model == "lecun1989_net5" and c.num_train_examples == 320
  assert c.dataset.startswith("npz:") and c.dataset.endswith("data/usps/usps.npz")
  assert (c.loss, c.optimizer, c.batch_size, c.num_epochs) == ("mse", "sgd", 1, 100)
  c = config_lib.load_config(f"{path}:net=2,digits")
  assert c.model == "lecun1989_net2" and c.dataset == "digits"
  c = config_lib.load_config(f"{path}:net=1,tiny")
  assert c.dataset == "synthetic" and c.synthetic.shape == (16, 16, 1) and c.num_epochs == 1
  assert config_lib.load_config(f"{path}:tiny,digits").dataset == "digits"
  with pytest.raises(ValueError, match="net=6"):
    config_lib.load_config(f"{path}:net=6")


# ----------------------------------------------------------------------------- study


def _load_study():
  spec = importlib.util.spec_from_file_location(
      "lecun1989_study", os.path.join(ROOT, "tools", "lecun1989_study.py"))
  study = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(study)
  return study


def test_study_tool_writes_table_csv_and_plot(tmp_path):
  study = _load_study()
  out = tmp_path / "study"
  # One net keeps it fast (every run compiles its own steps); the default is all five.
  assert study.main(["--data", "digits", "--tiny", "--seeds", "1", "--epochs", "1",
                     "--nets", "5", "--out", str(out)]) == 0
  with open(out / "results.csv") as f:
    rows = list(csv.DictReader(f))
  assert [(r["net"], r["seed"]) for r in rows] == [("5", "0")]
  assert rows[0]["params"] == "1060" and rows[0]["connections"] == "5194"
  assert 0 <= float(rows[0]["test_error"]) <= 1
  assert float(rows[0]["test_error"]) == pytest.approx(1 - float(rows[0]["test_accuracy"]))
  md = (out / "results.md").read_text()
  assert "| net-5 | 2 shared 8x8 maps" in md and "| 5,194 | 1,060 |" in md
  assert "--nets 5" in md and "digits" in md
  assert (out / "results.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
  assert (out / "runs" / "net5_seed0" / "train.log").exists()


def test_study_table_aggregates_seeds(tmp_path):
  study = _load_study()
  runs = [dict(net=net, seed=seed, description=f"d{net}", connections=10 * net, params=net,
               test_accuracy=acc, test_error=1 - acc, train_accuracy_last_pass=1.0, wall_s=1.0)
          for net, seed, acc in [(1, 0, 0.80), (1, 1, 0.90), (3, 0, 0.95)]]
  table = study.write_outputs(str(tmp_path), runs, ["# header"])
  assert [t["net"] for t in table] == [1, 3]
  assert table[0]["acc"] == pytest.approx((85.0, math.sqrt(50)))  # sample std of 80, 90
  assert table[1]["err"] == pytest.approx((5.0, 0.0)) and table[1]["seeds"] == 1
  md = (tmp_path / "results.md").read_text()
  assert "| net-1 | d1 | 10 | 1 | 15.00 +- 7.07 | 85.00 +- 7.07 |" in md
  assert "| 88.5 |" in md  # the paper's net-3 accuracy beside ours
  study.plot(str(tmp_path / "p.png"), table, "t")
  assert (tmp_path / "p.png").stat().st_size > 1000
  with open(tmp_path / "results.csv") as f:
    assert len(list(csv.DictReader(f))) == 3
