"""GoogLeNet (torchvision and paper variants) and BN-Inception: models/inception.py.

Counts and output structures go through jax.eval_shape (tracing only). What executes is
compiled once per shape at XLA's lowest optimisation level: without torch, one program
(a training step with a traced aux-loss weight, plus an eval pass) on 32x32 inputs, a
size at which every pooling stage still has a map.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import common
from models import create_model, torch_convert
from models.inception import GOOGLENET_MODULES, avg_pool
from tests.model_testing import (abstract_init, compile_at_level_0, count_params,
                                 random_variables)
from tests.torch_reference import (import_torchvision, max_relative_error,
                                   randomize_batch_norm, state_dict_numpy, torch_logits)
from training import optim
from training import steps as steps_lib

IMAGENET = (1, 224, 224, 3)
SMALL = (2, 32, 32, 3)


def _abstract_init(model, shape=IMAGENET):
  return abstract_init(model, shape)


def _abstract_apply(model, variables, shape, train):
  x = jax.ShapeDtypeStruct(shape, jnp.float32)
  if not train:
    return jax.eval_shape(lambda v, x: model.apply(v, x, train=False), variables, x)
  return jax.eval_shape(lambda v, x: model.apply(
      v, x, train=True, rngs={"dropout": jax.random.key(0)}, mutable=["batch_stats"]),
      variables, x)[0]


# ------------------------------------------------------------------ parameter counts


@pytest.mark.parametrize("name,aux,expected", [
    ("googlenet", False, 6_624_904),  # torchvision's num_params, REFERENCE.md
    ("googlenet", True, 13_004_888),  # torchvision googlenet(aux_logits=True)
    ("googlenet_paper", False, 6_998_552),
    ("googlenet_paper", True, 13_378_280),
])
def test_googlenet_param_counts(name, aux, expected):
  v = _abstract_init(create_model(name, num_classes=1000, aux_logits=aux))
  assert count_params(v["params"]) == expected
  assert ("aux1" in v["params"] and "aux2" in v["params"]) == aux


def test_googlenet_aux_head_counts():
  p = _abstract_init(create_model("googlenet", num_classes=1000))["params"]
  # 1x1 conv 128 (+BN), fc 2048 -> 1024, fc 1024 -> 1000, on 512 (4a) / 528 (4d) channels.
  head = lambda c: c * 128 + 2 * 128 + 2048 * 1024 + 1024 + 1024 * 1000 + 1000
  assert count_params(p["aux1"]) == head(512) and count_params(p["aux2"]) == head(528)


def test_bn_inception_param_count():
  v = _abstract_init(create_model("bn_inception", num_classes=1000))
  assert count_params(v["params"]) == 11_285_224
  with_bias = _abstract_init(create_model("bn_inception", num_classes=1000, conv_bias=True))
  # Cadene's pretrainedmodels bninception (the Caffe model: conv biases before BN).
  assert count_params(with_bias["params"]) == 11_295_240
  # One BN per conv: 69 convs, two statistics per channel.
  convs = [k for k in jax.tree_util.tree_leaves_with_path(v["params"])
           if jax.tree_util.keystr(k[0]).endswith("['conv']['kernel']")]
  assert len(convs) == 69
  assert count_params(v["batch_stats"]) == 2 * sum(k[1].shape[-1] for k in convs)


def test_bn_inception_module_widths():
  model = create_model("bn_inception", num_classes=1000)
  p = _abstract_init(model)["params"]
  inputs = {name: p[f"inception{name}"]["branch3x3_reduce"]["conv"]["kernel"].shape[2]
            for name in ("3b", "3c", "4a", "4b", "4c", "4d", "4e", "5a", "5b")}
  # The sums of Figure 5's branch columns (4c/4d: 608, 4e: 1056), as the Caffe model.
  assert inputs == {"3b": 256, "3c": 320, "4a": 576, "4b": 576, "4c": 576, "4d": 608,
                    "4e": 608, "5a": 1056, "5b": 1024}
  assert "branch1x1" not in p["inception3c"] and "pool_proj" not in p["inception4e"]
  assert p["inception4a"]["double3x3_2"]["conv"]["kernel"].shape == (3, 3, 128, 128)
  assert "bias" not in p["conv1"]["conv"] and "bn" in p["conv1"]


def test_googlenet_variant_layers():
  tv = _abstract_init(create_model("googlenet", num_classes=1000))
  paper = _abstract_init(create_model("googlenet_paper", num_classes=1000))
  assert tv["params"]["inception3a"]["branch5x5"]["conv"]["kernel"].shape == (3, 3, 16, 32)
  assert paper["params"]["inception3a"]["branch5x5"]["conv"]["kernel"].shape == (5, 5, 16, 32)
  assert set(tv["params"]["conv1"]) == {"conv", "bn"}
  assert set(paper) == {"params"}  # no BatchNorm anywhere
  assert set(paper["params"]["conv1"]["conv"]) == {"kernel", "bias"}
  # The paper's 5x5/3 aux pool gives 4x4x128 = 2048 inputs at 224, like torchvision's.
  assert paper["params"]["aux1"]["fc1"]["kernel"].shape == (2048, 1024)


def test_naive_towers_figure_2a():
  # Figure 2(a): no 1x1 reductions before the 3x3 and 5x5 convs, no pool projection; the
  # pooled input is concatenated, so every module adds its input's width.
  model = create_model("googlenet_paper", num_classes=1000, aux_logits=False, towers="naive")
  p = _abstract_init(model)["params"]
  assert set(p["inception3a"]) == {"branch1x1", "branch3x3", "branch5x5"}
  assert p["inception3a"]["branch5x5"]["conv"]["kernel"].shape == (5, 5, 192, 32)
  # 3a on conv2's 192 channels, with biases: 1x1 64, 3x3 128, 5x5 32.
  assert count_params(p["inception3a"]) == (192 * 64 + 64) + (9 * 192 * 128 + 128) + (
      25 * 192 * 32 + 32)
  c = 192
  for name, spec in GOOGLENET_MODULES.items():
    assert p[f"inception{name}"]["branch1x1"]["conv"]["kernel"].shape[2] == c
    c += spec.n1x1 + spec.n3x3 + spec.n5x5
  assert p["fc"]["kernel"].shape == (c, 1000) and c == 4944
  assert count_params(p) == 97_526_008  # against 6,998,552 reduced
  out = _abstract_apply(model, _abstract_init(model), (2, 64, 64, 3), train=False)
  assert out.shape == (2, 1000)
  # The reduced default is unchanged, and the aux heads take the naive widths.
  with_aux = create_model("googlenet", num_classes=10, towers="naive")
  aux = _abstract_init(with_aux, SMALL)["params"]["aux1"]["conv"]["conv"]["kernel"]
  assert aux.shape == (1, 1, 1280, 128)  # 4a's naive output


def test_width_scales_every_conv():
  model = create_model("googlenet", num_classes=10, width=0.25)
  p = _abstract_init(model, SMALL)["params"]
  assert p["conv1"]["conv"]["kernel"].shape == (7, 7, 3, 16)
  assert p["conv2"]["conv"]["kernel"].shape == (3, 3, 16, 48)
  assert p["inception3a"]["branch5x5_reduce"]["conv"]["kernel"].shape == (1, 1, 48, 4)
  assert p["inception5b"]["branch1x1"]["conv"]["kernel"].shape == (1, 1, 208, 96)
  assert p["aux2"]["conv"]["conv"]["kernel"].shape == (1, 1, 132, 32)
  assert p["aux2"]["fc1"]["kernel"].shape == (16 * 32, 256)
  assert p["fc"]["kernel"].shape == (256, 10)
  out = _abstract_apply(model, _abstract_init(model, SMALL), SMALL, train=True)
  assert out[0].shape == (2, 10) and [a.shape for a in out[1]] == [(2, 10), (2, 10)]


def test_towers_and_width_reject_bad_values():
  with pytest.raises(ValueError, match="towers.*'reduced', 'naive'"):
    create_model("googlenet", num_classes=10, towers="reduce")
  with pytest.raises(ValueError, match="width"):
    create_model("googlenet", num_classes=10, width=0.0)
  with pytest.raises(torch_convert.ConversionError, match="reduced"):
    torch_convert.convert("googlenet", {}, model=create_model("googlenet", num_classes=10,
                                                                towers="naive"))


# ------------------------------------------------------------------ outputs


@pytest.mark.parametrize("name", ["googlenet", "googlenet_paper"])
def test_googlenet_outputs_train_and_eval(name):
  model = create_model(name, num_classes=7)
  v = _abstract_init(model, (3, 224, 224, 3))
  assert {"aux1", "aux2"} <= set(v["params"])  # present after an eval-mode init
  logits, aux = _abstract_apply(model, v, (3, 224, 224, 3), train=True)
  assert logits.shape == (3, 7)
  assert len(aux) == 2 and all(a.shape == (3, 7) for a in aux)
  assert _abstract_apply(model, v, (3, 224, 224, 3), train=False).shape == (3, 7)
  # Without aux heads, training returns the logits alone.
  no_aux = create_model(name, num_classes=7, aux_logits=False)
  v = _abstract_init(no_aux, (3, 224, 224, 3))
  assert _abstract_apply(no_aux, v, (3, 224, 224, 3), train=True).shape == (3, 7)


def test_bn_inception_outputs_and_bfloat16():
  model = create_model("bn_inception", num_classes=5, dtype=jnp.bfloat16)
  v = _abstract_init(model, (2, 224, 224, 3))
  assert {x.dtype for x in jax.tree_util.tree_leaves(v)} == {jnp.dtype(jnp.float32)}
  for train in (True, False):
    y = _abstract_apply(model, v, (2, 224, 224, 3), train)
    assert y.shape == (2, 5) and y.dtype == jnp.bfloat16


def test_input_size_limits_have_clear_errors():
  # BN-Inception's stride-2 modules need even maps (Caffe's ceil-mode pool vs the conv).
  with pytest.raises(ValueError, match="even height and width"):
    _abstract_init(create_model("bn_inception", num_classes=10), (1, 48, 48, 3))
  # The paper's 5x5/3 auxiliary pool needs 4a's map to be at least 5x5.
  with pytest.raises(ValueError, match="at least 5x5"):
    _abstract_init(create_model("googlenet_paper", num_classes=10), (1, 64, 64, 3))
  _abstract_init(create_model("googlenet_paper", num_classes=10), (1, 80, 80, 3))
  with pytest.raises(ValueError, match="weight_init"):
    _abstract_init(create_model("googlenet", num_classes=10, weight_init="he"))


def test_avg_pool_counts_padding():
  x = jnp.ones((1, 4, 4, 1))
  y = np.asarray(avg_pool(x, 3, 1, pad=1))[0, :, :, 0]
  assert y[0, 0] == pytest.approx(4 / 9) and y[0, 1] == pytest.approx(6 / 9)
  assert y[1, 1] == pytest.approx(1.0)
  z = avg_pool(jnp.arange(196.0).reshape(1, 14, 14, 1), 5, 3)  # the paper's aux pool
  assert z.shape == (1, 4, 4, 1)
  assert float(z[0, 1, 2, 0]) == pytest.approx(np.arange(196.0).reshape(14, 14)[3:8, 6:11].mean())


# ------------------------------------------------------------------ training step


@pytest.fixture(scope="module")
def googlenet_step():
  """A training step of ``googlenet`` through steps.make_train_step, with the aux-loss
  weight traced so that one compiled program runs it with 0.3 and with 0, plus an
  eval-mode pass. Plain SGD without momentum or decay: an update is -lr x gradient."""
  model = create_model("googlenet", num_classes=10, dropout=0.0, aux_dropout=0.0)
  variables = random_variables(model, (4, 32, 32, 3))
  c = common.base()
  c.optimizer, c.momentum, c.weight_decay = "sgd", 0.0, 0.0
  c.learning_rate, c.schedule = 0.1, "constant"
  tx = optim.create_optimizer(c, optim.create_schedule(c, 1))
  state = steps_lib.TrainState(step=jnp.zeros((), jnp.int32), params=variables["params"],
                               batch_stats=variables["batch_stats"],
                               opt_state=tx.init(variables["params"]))
  rng = np.random.default_rng(1)
  images = jnp.asarray(rng.integers(0, 256, (4, 32, 32, 3), dtype=np.uint8))
  labels = jnp.asarray(rng.integers(0, 10, 4).astype(np.int32))

  def run(weight, state):
    cfg = steps_lib.StepConfig.normalizing((0.5,) * 3, (0.25,) * 3, aux_loss_weight=weight)
    train_step = steps_lib.make_train_step(model, tx, cfg, jax.random.key(2))
    new_state, metrics = train_step(
        state, steps_lib.zero_metrics(steps_lib.TRAIN_METRICS), images, labels)
    x = (images.astype(jnp.float32) / 255.0 - 0.5) / 0.25
    eval_logits = model.apply({"params": state.params, "batch_stats": state.batch_stats},
                              x, train=False)
    return new_state, metrics, eval_logits

  run = compile_at_level_0(run, 0.3, state)
  with_aux, with_aux_metrics, eval_logits = run(0.3, state)
  without, without_metrics, _ = run(0.0, state)
  return dict(before=variables["params"], with_aux=with_aux.params, without=without.params,
              loss_with_aux=float(with_aux_metrics["loss"] / with_aux_metrics["count"]),
              loss_without=float(without_metrics["loss"] / without_metrics["count"]),
              stats_before=variables["batch_stats"], stats_after=with_aux.batch_stats,
              eval_logits=np.asarray(eval_logits))


def test_train_step_reports_the_main_loss(googlenet_step):
  r = googlenet_step
  # With weight 0 the optimised loss is the main loss; with 0.3 it adds 0.3 x two
  # cross-entropies (each > 0), yet the reported loss stays the main one.
  assert r["loss_with_aux"] == pytest.approx(r["loss_without"], rel=1e-5)
  assert 1.0 < r["loss_without"] < 20.0


def test_train_step_trains_aux_heads_only_with_a_weight(googlenet_step):
  r = googlenet_step
  changed = lambda a, b: not np.allclose(a, b, rtol=0, atol=1e-7)
  for head in ("aux1", "aux2"):
    assert all(jax.tree.leaves(jax.tree.map(changed, r["with_aux"][head], r["before"][head])))
    assert all(jax.tree.leaves(jax.tree.map(np.array_equal, r["without"][head],
                                            r["before"][head])))
  # The aux gradients reach the trunk below the heads, and nothing above aux2.
  assert changed(r["with_aux"]["inception4a"]["branch1x1"]["conv"]["kernel"],
                 r["without"]["inception4a"]["branch1x1"]["conv"]["kernel"])
  for top in ("inception4e", "inception5b", "fc"):
    assert not any(jax.tree.leaves(jax.tree.map(changed, r["with_aux"][top],
                                                r["without"][top])))
  # The aux heads' BatchNorm statistics are updated in training too.
  assert changed(r["stats_after"]["aux2"]["conv"]["bn"]["mean"],
                 r["stats_before"]["aux2"]["conv"]["bn"]["mean"])


def test_eval_pass_on_small_input(googlenet_step):
  y = googlenet_step["eval_logits"]
  assert y.shape == (4, 10) and np.all(np.isfinite(y))
  assert not np.allclose(y[0], y[1])  # the image matters


# ------------------------------------------------------------------ torchvision


def _torchvision_googlenet(torch, tv, **kw):
  torch.manual_seed(0)
  m = tv.models.googlenet(weights=None, init_weights=True, transform_input=False, **kw)
  # torchvision's N(0, 0.01) init shrinks the signal 60 layers deep until the logits are
  # the fc bias alone; He init keeps every layer in play, so the test sees all of them.
  with torch.no_grad():
    for layer in m.modules():
      if isinstance(layer, (torch.nn.Conv2d, torch.nn.Linear)):
        torch.nn.init.kaiming_normal_(layer.weight)
  randomize_batch_norm(torch, m)
  return m.eval()


def test_torchvision_googlenet_equivalence():
  torch, tv = import_torchvision()
  ref = _torchvision_googlenet(torch, tv, aux_logits=True)
  model = create_model("googlenet", num_classes=1000)
  variables = torch_convert.convert("googlenet", state_dict_numpy(ref), model=model,
                                    input_shape=SMALL)
  rng = np.random.default_rng(0)
  for size in (32, 224):
    x = rng.normal(size=(2, size, size, 3)).astype(np.float32)
    expected = torch_logits(torch, ref, x)
    assert np.std(expected) > 10 * np.std(ref.fc.bias.detach().numpy())  # not just bias
    apply = lambda v, x: model.apply(v, x, train=False)
    err = max_relative_error(compile_at_level_0(apply, variables, x)(variables, x), expected)
    print(f"googlenet vs torchvision at {size}x{size}: max relative error {err:.2e}")
    assert err < 1e-4


def test_torchvision_googlenet_training_outputs():
  torch, tv = import_torchvision()
  ref = _torchvision_googlenet(torch, tv, aux_logits=True, dropout=0.0, dropout_aux=0.0)
  model = create_model("googlenet", num_classes=1000, dropout=0.0, aux_dropout=0.0)
  variables = torch_convert.convert("googlenet", state_dict_numpy(ref), model=model)
  # BatchNorm on batch statistics amplifies float32 round-off when it averages over few
  # values (5b's map is 1x1 at 32x32): 8 images of 64x64 keep the error near 3e-5.
  x = np.random.default_rng(1).normal(size=(8, 64, 64, 3)).astype(np.float32)
  ref.train()
  with torch.no_grad():
    out = ref(torch.from_numpy(x.transpose(0, 3, 1, 2)))
  apply = lambda v, x: model.apply(v, x, train=True, mutable=["batch_stats"])
  (logits, (aux1, aux2)), updates = compile_at_level_0(apply, variables, x)(variables, x)
  for ours, theirs in ((logits, out.logits), (aux1, out.aux_logits1),
                       (aux2, out.aux_logits2)):
    err = max_relative_error(ours, theirs.numpy())
    print(f"googlenet training output vs torchvision: max relative error {err:.2e}")
    assert err < 1e-4
  # Running means move by the same momentum (PyTorch 0.1 = Flax 0.9).
  np.testing.assert_allclose(updates["batch_stats"]["conv1"]["bn"]["mean"],
                             ref.conv1.bn.running_mean.numpy(), rtol=1e-4, atol=1e-6)


def test_torchvision_googlenet_without_aux_heads():
  torch, tv = import_torchvision()
  x = np.random.default_rng(2).normal(size=SMALL).astype(np.float32)
  model = create_model("googlenet", num_classes=1000, aux_logits=False)
  no_aux = _torchvision_googlenet(torch, tv, aux_logits=False)
  variables = torch_convert.convert("googlenet", state_dict_numpy(no_aux), model=model,
                                    input_shape=SMALL)
  assert "aux1" not in variables["params"]
  apply = lambda v, x: model.apply(v, x, train=False)
  err = max_relative_error(compile_at_level_0(apply, variables, x)(variables, x),
                           torch_logits(torch, no_aux, x))
  assert err < 1e-4
  # A checkpoint with aux heads loads into a model without them (they are dropped), but
  # not into a model of another variant, and not the other way round.
  with_aux = state_dict_numpy(_torchvision_googlenet(torch, tv, aux_logits=True))
  dropped = torch_convert.convert("googlenet", with_aux, model=model, input_shape=SMALL)
  assert "aux1" not in dropped["params"]
  # torchvision's default file (aux heads deleted on load) into our model with heads:
  # it converts, says so, and leaves the heads out (they keep their initialisation).
  with pytest.warns(torch_convert.ConversionNote, match="aux"):
    lacking = torch_convert.convert("googlenet", state_dict_numpy(no_aux),
                                    model=create_model("googlenet", num_classes=1000))
  assert "aux1" not in lacking["params"]
  with pytest.raises(torch_convert.ConversionError, match="googlenet"):
    torch_convert.convert("googlenet", with_aux,
                          model=create_model("googlenet_paper", num_classes=1000))


def test_converter_rejects_other_variants_without_torch():
  for model in (create_model("googlenet", num_classes=10, lrn=True),
                create_model("googlenet_paper", num_classes=10),
                create_model("bn_inception", num_classes=10)):
    with pytest.raises(torch_convert.ConversionError, match="BatchNorm"):
      torch_convert.convert("googlenet", {}, model=model)
  assert "googlenet" in torch_convert.list_convertible()


# ------------------------------------------------------------------ configs


@pytest.mark.parametrize("spec,model,lr,every", [
    ("googlenet.py", "googlenet_paper", 0.08, 8.0),  # -4% every 8 epochs (Sec. 6)
    ("googlenet.py:torchvision", "googlenet", 0.08, 8.0),
    ("bn_inception.py", "bn_inception", 0.06, 4 / 3),  # 6x faster decay (Sec. 4.2.1)
    ("bn_inception.py:x30", "bn_inception", 0.36, 4 / 3),
])
def test_config_schedules(spec, model, lr, every):
  from training import config as config_lib
  c = config_lib.load_config(f"configs/{spec}")
  config_lib.validate(c)
  assert c.model == model and c.learning_rate == pytest.approx(lr)
  steps_per_epoch = 30
  schedule = optim.create_schedule(c, steps_per_epoch)
  assert float(schedule(int(c.warmup_epochs * steps_per_epoch) - 1)) < lr  # warm-up
  for k in range(1, 7):
    step = int(round((k * every) * steps_per_epoch))
    if step <= c.warmup_epochs * steps_per_epoch:
      continue  # a decay inside the warm-up applies from its end
    assert float(schedule(step - 1)) == pytest.approx(lr * 0.96 ** (k - 1), rel=1e-5)
    assert float(schedule(step + 1)) == pytest.approx(lr * 0.96 ** k, rel=1e-5)
  tiny = config_lib.load_config(f"configs/{spec.split(':')[0]}:tiny")
  assert tiny.dataset == "synthetic" and tiny.num_epochs == 1
