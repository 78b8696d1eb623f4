"""Optimizers, schedules, weight-decay masks and losses."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import models
from configs import common
from training import losses, optim


def _config(**kw):
  c = common.base()
  for k, v in kw.items():
    c[k] = v
  return c


def test_decay_mask_skips_biases_and_scales():
  params = {"conv": {"kernel": jnp.ones((3, 3, 1, 2)), "bias": jnp.ones((8, 8, 2))},
            "bn": {"scale": jnp.ones(2), "bias": jnp.ones(2)}}
  mask = optim.decay_mask(params)
  assert mask == {"conv": {"kernel": True, "bias": False}, "bn": {"scale": False, "bias": False}}


@pytest.mark.parametrize("name", ["sgd", "adam", "adamw"])
def test_weight_decay_only_on_kernels(name):
  c = _config(optimizer=name, weight_decay=0.1, learning_rate=0.1, momentum=0.0)
  tx = optim.create_optimizer(c, optim.create_schedule(c, 10))
  params = {"d": {"kernel": jnp.ones(3), "bias": jnp.ones(3)}}
  zero = jax.tree.map(jnp.zeros_like, params)
  updates, _ = tx.update(zero, tx.init(params), params)
  assert np.all(np.asarray(updates["d"]["bias"]) == 0)
  assert np.all(np.asarray(updates["d"]["kernel"]) < 0)


def test_sgd_nesterov_matches_optax():
  c = _config(optimizer="sgd", momentum=0.9, nesterov=True, learning_rate=0.5,
              schedule="constant")
  tx = optim.create_optimizer(c, optim.create_schedule(c, 10))
  ref = optax.sgd(0.5, momentum=0.9, nesterov=True)
  p = jnp.array([1.0, -2.0])
  s, r = tx.init(p), ref.init(p)
  for g in (jnp.array([0.3, 0.1]), jnp.array([-0.2, 0.4])):
    u, s = tx.update(g, s, p)
    v, r = ref.update(g, r, p)
    np.testing.assert_allclose(u, v, rtol=1e-6)


def test_schedules():
  spe = 10
  c = _config(schedule="step", learning_rate=1.0, num_epochs=10, decay_epochs=(3, 6),
              decay_factor=0.1)
  s = optim.create_schedule(c, spe)
  assert [float(s(t)) for t in (0, 29, 30, 59, 60, 99)] == pytest.approx(
      [1, 1, 0.1, 0.1, 0.01, 0.01])
  c = _config(schedule="cosine", learning_rate=1.0, num_epochs=10, warmup_epochs=2,
              min_learning_rate=0.01)
  s = optim.create_schedule(c, spe)
  assert float(s(0)) == 0.0 and float(s(10)) == pytest.approx(0.5)
  assert float(s(20)) == pytest.approx(1.0)
  assert float(s(60)) == pytest.approx(0.01 + 0.99 * 0.5, rel=1e-5)
  assert float(s(100)) == pytest.approx(0.01, rel=1e-4)
  c = _config(schedule="constant", learning_rate=0.03, warmup_epochs=0)
  assert float(optim.create_schedule(c, spe)(123)) == pytest.approx(0.03)
  c = _config(schedule="step", learning_rate=1.0, warmup_epochs=1, decay_epochs=(5,))
  s = optim.create_schedule(c, spe)
  assert float(s(5)) == pytest.approx(0.5) and float(s(49)) == 1.0 and float(s(50)) == pytest.approx(0.1)


def test_linear_schedule():
  # The modern LeNet-1989 reproduction's decay: 3e-4 to 1e-4 in a straight line.
  c = _config(schedule="linear", learning_rate=3e-4, min_learning_rate=1e-4, num_epochs=8)
  s = optim.create_schedule(c, 10)
  assert [float(s(t)) for t in (0, 40, 80, 200)] == pytest.approx([3e-4, 2e-4, 1e-4, 1e-4])
  c = _config(schedule="linear", learning_rate=1.0, min_learning_rate=0.0, num_epochs=10,
              warmup_epochs=2)
  s = optim.create_schedule(c, 10)
  assert [float(s(t)) for t in (10, 20, 60, 100)] == pytest.approx([0.5, 1.0, 0.5, 0.0])


def test_cross_entropy_and_smoothing():
  logits = jnp.array([[2.0, 0.0, -1.0]])
  labels = jnp.array([0])
  p = jax.nn.softmax(logits)
  np.testing.assert_allclose(losses.cross_entropy(logits, labels), -jnp.log(p[:, 0]), rtol=1e-6)
  smooth = losses.cross_entropy(logits, labels, 0.3)
  target = jnp.array([[0.8, 0.1, 0.1]])
  np.testing.assert_allclose(smooth, -(target * jnp.log(p)).sum(-1), rtol=1e-6)


def test_map_criterion_is_the_papers_eq_9():
  """LeNet-5's MAP criterion, y_D + log(exp(-j) + sum_i exp(-y_i)), on RBF penalties y
  (logits -y); a very large j is the plain cross-entropy, soft targets work too."""
  y = jnp.array([[3.0, 40.0, 7.5], [60.0, 70.0, 45.0]])
  labels = jnp.array([0, 2])
  for j in (0.0, 5.0, 20.0):
    want = y[jnp.arange(2), labels] + jnp.log(jnp.exp(-j) + jnp.exp(-y).sum(-1))
    np.testing.assert_allclose(losses.cross_entropy(-y, labels, map_j=j), want, rtol=1e-5)
  np.testing.assert_allclose(losses.cross_entropy(-y, labels, map_j=1e4),
                             losses.cross_entropy(-y, labels), rtol=1e-6)
  # Far above j, the criterion pulls the right penalty down at rate 1 (the MLE term),
  # where the cross-entropy has all but stopped.
  grad = jax.grad(lambda y: losses.cross_entropy(-y, labels, map_j=5.0).sum())(y)
  assert float(grad[1, 2]) == pytest.approx(1.0, abs=1e-3)
  assert abs(float(jax.grad(lambda y: losses.cross_entropy(-y, labels).sum())(y)[1, 2])) < 1e-3
  soft = jax.nn.one_hot(labels, 3)
  np.testing.assert_allclose(losses.cross_entropy(-y, soft, map_j=5.0),
                             losses.cross_entropy(-y, labels, map_j=5.0), rtol=1e-6)
  with pytest.raises(ValueError, match="map_j"):
    losses.per_example_loss("mse", -y, labels, map_j=5.0)


def test_mse_on_pm1_targets():
  out = jnp.array([[1.0, -1.0, -1.0], [0.0, 0.0, 0.0]])
  np.testing.assert_allclose(losses.mse_pm1(out, jnp.array([0, 2])), [0.0, 1.0])
  np.testing.assert_allclose(losses.mse_pm1(out, jnp.array([1, 2])), [8 / 3, 1.0], rtol=1e-6)


def test_grad_clip_norm_bounds_the_update():
  """SGD without momentum, lr 1: the update is minus the clipped gradient."""
  c = _config(optimizer="sgd", momentum=0.0, learning_rate=1.0, schedule="constant",
              grad_clip_norm=1.0)
  tx = optim.create_optimizer(c, optim.create_schedule(c, 10))
  params = {"d": {"kernel": jnp.zeros(4)}}
  big = {"d": {"kernel": jnp.array([3.0, 4.0, 0.0, 0.0])}}  # norm 5 -> 1
  updates, _ = tx.update(big, tx.init(params), params)
  np.testing.assert_allclose(updates["d"]["kernel"], [-0.6, -0.8, 0, 0], rtol=1e-6)
  small = {"d": {"kernel": jnp.array([0.3, 0.4, 0.0, 0.0])}}  # norm 0.5: unchanged
  updates, _ = tx.update(small, tx.init(params), params)
  np.testing.assert_allclose(updates["d"]["kernel"], [-0.3, -0.4, 0, 0], rtol=1e-6)


def test_rmsprop_is_tensorflows():
  """Two steps of TF1 RMSProp by hand: ms starts at 1, eps inside the square root,
  momentum accumulates lr * g / sqrt(ms + eps)."""
  c = _config(optimizer="rmsprop", learning_rate=0.1, momentum=0.9, rms_decay=0.9, eps=1.0,
              schedule="constant")
  tx = optim.create_optimizer(c, optim.create_schedule(c, 10))
  params = {"d": {"kernel": jnp.zeros(2)}}
  state = tx.init(params)
  ms, mom = np.ones(2), np.zeros(2)
  for g in (np.array([1.0, -2.0]), np.array([0.5, 3.0])):
    updates, state = tx.update({"d": {"kernel": jnp.asarray(g)}}, state, params)
    ms = 0.9 * ms + 0.1 * g**2
    mom = 0.9 * mom + 0.1 * g / np.sqrt(ms + 1.0)
    np.testing.assert_allclose(updates["d"]["kernel"], -mom, rtol=1e-5)


def test_linear_scaling_rule():
  c = _config(learning_rate=4e-3, lr_base_batch_size=4096, batch_size=1024,
              schedule="constant")
  assert optim.peak_learning_rate(c) == pytest.approx(1e-3)
  assert float(optim.create_schedule(c, 10)(5)) == pytest.approx(1e-3)
  c.lr_base_batch_size = 0  # off: the rate as given
  assert optim.peak_learning_rate(c) == 4e-3


def test_soft_targets_cross_entropy():
  logits = jnp.array([[2.0, 0.0, -1.0]])
  soft = jnp.array([[0.7, 0.2, 0.1]])
  want = -jnp.sum(soft * jax.nn.log_softmax(logits), -1)
  np.testing.assert_allclose(losses.cross_entropy(logits, soft), want, rtol=1e-6)
  # A one-hot soft target is the hard label; smoothing is not applied twice.
  np.testing.assert_allclose(losses.cross_entropy(logits, jnp.array([[0.0, 1.0, 0.0]]), 0.1),
                             losses.cross_entropy(logits, jnp.array([1])), rtol=1e-6)
  with pytest.raises(ValueError, match="cross_entropy"):
    losses.per_example_loss("mse", logits, soft)


def test_lamb_matches_optax_and_trust_ratio_bounds_steps():
  params = {"dense": {"kernel": jnp.full((4, 4), 0.5), "bias": jnp.zeros(4)}}
  grads = {"dense": {"kernel": jnp.full((4, 4), 10.0), "bias": jnp.full(4, 3.0)}}
  c = _config(optimizer="lamb", learning_rate=0.01, weight_decay=0.1, schedule="constant")
  tx = optim.create_optimizer(c, optim.create_schedule(c, 1))
  updates, _ = tx.update(grads, tx.init(params), params)
  ref = optax.lamb(0.01, weight_decay=0.1, mask=optim.decay_mask)
  want, _ = ref.update(grads, ref.init(params), params)
  for a, b in zip(jax.tree.leaves(updates), jax.tree.leaves(want)):
    np.testing.assert_allclose(a, b, rtol=1e-6)
  # The trust ratio makes the step lr * ||w|| / ||adam step||: here 0.01 * ||w||.
  k = updates["dense"]["kernel"]
  assert float(jnp.linalg.norm(k)) == pytest.approx(0.01 * float(jnp.linalg.norm(
      params["dense"]["kernel"])), rel=1e-4)


def _abstract_params(name, size=32):
  m = models.create_model(name, num_classes=10)
  return jax.eval_shape(lambda: m.init(jax.random.key(0), jnp.zeros((1, size, size, 3)),
                                       train=False))["params"]


def test_layer_decay_convnext_follows_the_official_assignment():
  params = _abstract_params("convnext_t")
  ids, num_layers = models.layer_groups("convnext_t")(list(params))
  assert num_layers == 12
  # get_num_layer_for_convnext: stem 0; stages 1, 2 -> 1, 2; stage 3 in threes from 3;
  # stage 4 and the last downsampling -> 12; the head -> 13.
  assert ids["stem_conv"] == ids["stem_norm"] == 0
  assert ids["stage1_block3"] == 1 and ids["downsample2_conv"] == 2
  assert ids["stage2_block1"] == 2 and ids["downsample3_norm"] == 3
  assert [ids[f"stage3_block{b}"] for b in range(1, 10)] == [3, 3, 3, 4, 4, 4, 5, 5, 5]
  assert ids["downsample4_conv"] == ids["stage4_block3"] == 12
  assert ids["head"] == ids["head_norm"] == 13
  scales = optim.layer_scales(params, 0.8, optim.model_layer_ids("convnext_t"))
  assert scales["head"]["kernel"] == 1.0
  assert scales["stage4_block1"]["dwconv"]["kernel"] == pytest.approx(0.8)
  assert scales["stem_conv"]["kernel"] == pytest.approx(0.8 ** 13)


# The reference assignments, written out from their sources on the reference code's own
# parameter names (ours map onto them one to one).


def _official_convnext(var_name):
  """facebookresearch/ConvNeXt optim_factory.get_num_layer_for_convnext, verbatim."""
  num_max_layer = 12
  if var_name.startswith("downsample_layers"):
    stage_id = int(var_name.split(".")[1])
    if stage_id == 0:
      layer_id = 0
    elif stage_id == 1 or stage_id == 2:
      layer_id = stage_id + 1
    elif stage_id == 3:
      layer_id = 12
    return layer_id
  elif var_name.startswith("stages"):
    stage_id = int(var_name.split(".")[1])
    block_id = int(var_name.split(".")[2])
    if stage_id == 0 or stage_id == 1:
      layer_id = stage_id + 1
    elif stage_id == 2:
      layer_id = 3 + block_id // 3
    elif stage_id == 3:
      layer_id = 12
    return layer_id
  else:
    return num_max_layer + 1


def _convnext_reference_name(name):
  if name.startswith("stem_"):
    return "downsample_layers.0.0"
  if name.startswith("downsample"):
    return f"downsample_layers.{int(name[len('downsample')]) - 1}.0"
  if name.startswith("stage"):
    stage, block = name[len("stage"):].split("_block")
    return f"stages.{int(stage) - 1}.{int(block) - 1}.dwconv"
  return {"head_norm": "norm", "head": "head"}[name]


def _beit_vit(var_name, num_max_layer):
  """microsoft/unilm beit/optim_factory.get_num_layer_for_vit, verbatim."""
  if var_name in ("cls_token", "mask_token", "pos_embed"):
    return 0
  elif var_name.startswith("patch_embed"):
    return 0
  elif var_name.startswith("rel_pos_bias"):
    return num_max_layer - 1
  elif var_name.startswith("blocks"):
    layer_id = int(var_name.split(".")[1])
    return layer_id + 1
  else:
    return num_max_layer - 1


def _vit_reference_name(name):
  if name.startswith("block"):
    return f"blocks.{int(name[len('block'):]) - 1}.norm1"
  return {"cls_token": "cls_token", "pos_embed": "pos_embed",
          "patch_embed": "patch_embed.proj", "encoder_norm": "norm", "head": "head"}[name]


def _resnet50_in_block_order():
  """The stem (timm's group_matcher: conv1, bn1) 0, ResNet-50's 3 + 4 + 6 + 3 blocks
  1..16 in network order, fc 17."""
  ids = {"conv1": 0, "bn1": 0}
  for stage, blocks in enumerate((3, 4, 6, 3), 1):
    for block in range(1, blocks + 1):
      ids[f"stage{stage}_block{block}"] = len(ids) - 1
  ids["fc"] = len(ids) - 1
  return ids, 16


@pytest.mark.parametrize("name", ["convnext_t", "vit_ti16", "resnet50"])
def test_layer_decay_scales_are_the_reference_assignments(name):
  params = _abstract_params(name, 224 if name.startswith("vit") else 32)
  if name == "convnext_t":
    want = {n: _official_convnext(_convnext_reference_name(n)) for n in params}, 12
  elif name == "vit_ti16":
    want = {n: _beit_vit(_vit_reference_name(n), 12 + 2) for n in params}, 12
  else:
    want = _resnet50_in_block_order()
  assert set(want[0]) == set(params)
  decay = 0.65
  scales = optim.layer_scales(params, decay, optim.model_layer_ids(name))
  for top, sub in params.items():
    expected = decay ** (want[1] + 1 - want[0][top])
    assert {s == expected for s in jax.tree.leaves(scales[top])} == {True}, top
    assert len(jax.tree.leaves(scales[top])) == len(jax.tree.leaves(sub))


def test_layer_decay_other_families_and_errors():
  vit = ["cls_token", "pos_embed", "patch_embed", *[f"block{i}" for i in range(1, 13)],
         "encoder_norm", "head"]
  ids, n = models.layer_groups("vit_b16")(vit)
  assert n == 12 and ids["cls_token"] == ids["patch_embed"] == 0
  assert ids["block1"] == 1 and ids["block10"] == 10 and ids["head"] == 13
  resnet = ["conv1", "bn1", "stage1_block1", "stage1_block2", "stage2_block1", "fc"]
  ids, n = models.layer_groups("resnet20")(resnet)
  assert n == 3 and ids["bn1"] == 0 and ids["stage2_block1"] == 3 and ids["fc"] == 4
  assert models.layer_groups("vgg11") is None
  with pytest.raises(optim.LayerDecayError, match="'vgg11'.*layer_decay=0"):
    c = _config(model="vgg11", layer_decay=0.8)
    optim.create_optimizer(c, optim.create_schedule(c, 1))


def test_layer_decay_scales_every_update_of_its_layer():
  params = {"conv1": {"kernel": jnp.ones((2, 2))}, "stage1_block1": {"w": jnp.ones(3)},
            "stage1_block2": {"w": jnp.ones(3)}, "fc": {"kernel": jnp.ones((2,))}}
  grads = jax.tree.map(jnp.ones_like, params)
  c = _config(model="resnet20", optimizer="sgd", momentum=0.0, learning_rate=1.0,
              schedule="constant", layer_decay=0.5)
  tx = optim.create_optimizer(c, optim.create_schedule(c, 1))
  updates, _ = tx.update(grads, tx.init(params), params)
  # 2 blocks: stem 0 -> 0.5**3, blocks 1, 2 -> 0.5**2, 0.5, head 3 -> 1.
  assert float(updates["conv1"]["kernel"][0, 0]) == pytest.approx(-0.125)
  assert float(updates["stage1_block1"]["w"][0]) == pytest.approx(-0.25)
  assert float(updates["stage1_block2"]["w"][0]) == pytest.approx(-0.5)
  assert float(updates["fc"]["kernel"][0]) == pytest.approx(-1.0)


def _muon_setup(**muon):
  c = _config(optimizer="muon", learning_rate=0.5, momentum=0.9, nesterov=True,
              schedule="constant", weight_decay=0.01)
  c.muon.update(dict(learning_rate=0.1, beta=0.0, **muon))
  tx = optim.create_optimizer(c, optim.create_schedule(c, 10))
  k = jax.random.split(jax.random.key(0), 4)
  params = {"conv": {"kernel": 3 * jax.random.normal(k[0], (3, 3, 4, 8))},
            "bn": {"bias": jnp.ones((2, 2, 8))}, "head": {"kernel": jnp.ones((8, 10))}}
  # A gradient whose filter matrix has singular values from 0.1 to 10.
  u, _, vt = np.linalg.svd(np.asarray(jax.random.normal(k[1], (36, 8))), full_matrices=False)
  g_conv = (u * np.geomspace(0.1, 10, 8)) @ vt
  grads = {"conv": {"kernel": jnp.asarray(g_conv.reshape(3, 3, 4, 8))},
           "bn": {"bias": jax.random.normal(k[2], (2, 2, 8))},  # untied, as LeNet-1989's
           "head": {"kernel": jax.random.normal(k[3], (8, 10))}}
  return c, tx, params, grads


def test_muon_orthogonalises_filters_and_steps_the_rest_by_sgd():
  c, tx, params, grads = _muon_setup()
  updates, _ = tx.update(grads, tx.init(params), params)
  # The filter bank's update, as a (taps x inputs, outputs) matrix, is -lr times a near
  # orthogonal matrix: every singular value close to lr (Newton-Schulz's quintic leaves
  # them in about [0.7, 1.2]), where the gradient's spread over two decades.
  sv = np.linalg.svd(np.asarray(updates["conv"]["kernel"]).reshape(36, 8), compute_uv=False)
  assert np.all((sv > 0.6 * 0.1) & (sv < 1.25 * 0.1)), sv
  assert float(jnp.vdot(updates["conv"]["kernel"], grads["conv"]["kernel"])) < 0
  # Biases and the dense classifier: the config's SGD, its coupled L2 on kernels only.
  sgd = optax.chain(optax.add_decayed_weights(0.01, optim.decay_mask),
                    optax.sgd(0.5, momentum=0.9, nesterov=True))
  rest = {k: params[k] for k in ("bn", "head")}
  ref, _ = sgd.update({k: grads[k] for k in rest}, sgd.init(rest), rest)
  for k in rest:
    np.testing.assert_allclose(updates[k]["kernel" if k == "head" else "bias"],
                               ref[k]["kernel" if k == "head" else "bias"], rtol=1e-6)


def test_muon_normalize_rescales_filters_as_airbench():
  _, plain, params, grads = _muon_setup()
  _, normed, _, _ = _muon_setup(normalize=True)
  u0, _ = plain.update(grads, plain.init(params), params)
  u1, _ = normed.update(grads, normed.init(params), params)
  p = params["conv"]["kernel"]
  c = np.sqrt(8) / np.linalg.norm(np.asarray(p))
  # p <- c p - lr U: the same Muon step, added to the filters rescaled to norm sqrt(8).
  np.testing.assert_allclose(u1["conv"]["kernel"], u0["conv"]["kernel"] + (c - 1) * p,
                             rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(u1["head"]["kernel"], u0["head"]["kernel"])


def test_muon_follows_the_schedule_and_decays_its_filters():
  c = _config(optimizer="muon", learning_rate=2.0, schedule="linear", num_epochs=1,
              min_learning_rate=0.0)
  c.muon.update(dict(learning_rate=0.2, beta=0.0, weight_decay=0.5))
  tx = optim.create_optimizer(c, optim.create_schedule(c, 4))
  params = {"conv": {"kernel": jnp.ones((1, 1, 2, 2))}}
  zero = jax.tree.map(jnp.zeros_like, params)
  state = tx.init(params)
  steps = []
  for _ in range(3):  # zero gradient: the update is the decay alone, -rate * 0.5 * p
    u, state = tx.update(zero, state, params)
    steps.append(float(u["conv"]["kernel"][0, 0, 0, 0]))
  assert steps == pytest.approx([-0.2 * 0.5, -0.15 * 0.5, -0.1 * 0.5], abs=1e-6)


def test_freeze_holds_the_named_parameters_from_the_start_or_after_their_epochs():
  c = _config(optimizer="sgd", learning_rate=0.1, momentum=0.9, weight_decay=0.01,
              schedule="constant", freeze="whiten/kernel, whiten/bias:1.5")
  tx = optim.create_optimizer(c, optim.create_schedule(c, 2), steps_per_epoch=2)
  params = {"whiten": {"kernel": jnp.ones((2, 2, 1, 8)), "bias": jnp.zeros(8)},
            "head": {"kernel": jnp.ones((8, 3))}}
  grads = jax.tree.map(jnp.ones_like, params)
  state = tx.init(params)
  history = [params]
  for _ in range(5):
    updates, state = tx.update(grads, state, params)
    params = optax.apply_updates(params, updates)
    history.append(params)
  kernels = [np.asarray(p["whiten"]["kernel"]) for p in history]
  biases = [float(p["whiten"]["bias"][0]) for p in history]
  heads = [float(p["head"]["kernel"][0, 0]) for p in history]
  assert all((k == 1).all() for k in kernels)  # frozen from the start, decay held off too
  # 1.5 epochs of 2 steps: three steps train the bias, then it keeps its value.
  assert 0 > biases[1] > biases[2] > biases[3] and biases[3] == biases[4] == biases[5]
  assert heads[5] < heads[4] < heads[3]  # what is not named trains on


def test_lr_mults_scale_the_named_updates():
  c = _config(optimizer="sgd", learning_rate=0.1, momentum=0.0, schedule="constant",
              lr_mults="*/norm*/bias:64, head:0.5")
  tx = optim.create_optimizer(c, optim.create_schedule(c, 1))
  params = {"g1": {"norm1": {"bias": jnp.zeros(3)}, "conv": {"kernel": jnp.zeros((3, 3))}},
            "g2": {"norm2": {"bias": jnp.zeros(2), "scale": jnp.zeros(2)}},
            "head": {"kernel": jnp.zeros((3, 2)), "bias": jnp.zeros(2)}}
  updates, _ = tx.update(jax.tree.map(jnp.ones_like, params), tx.init(params), params)
  got = jax.tree.map(lambda u: float(u.ravel()[0]), updates)
  assert got == {"g1": {"norm1": {"bias": pytest.approx(-6.4)},
                        "conv": {"kernel": pytest.approx(-0.1)}},
                 "g2": {"norm2": {"bias": pytest.approx(-6.4), "scale": pytest.approx(-0.1)}},
                 "head": {"kernel": pytest.approx(-0.05), "bias": pytest.approx(-0.05)}}


def test_freeze_anneal_steps_the_named_parameter_down_to_zero_at_its_epochs():
  """Linear schedule 1 -> 0 over 8 steps; the bias trains for 4 steps (2 epochs of 2) at
  a rate 1 - step / 4 in place of the schedule's 1 - step / 8, then keeps its value."""
  c = _config(optimizer="sgd", learning_rate=1.0, momentum=0.0, schedule="linear",
              num_epochs=4, freeze="whiten/bias:2", freeze_anneal=True)
  tx = optim.create_optimizer(c, optim.create_schedule(c, 2), steps_per_epoch=2)
  params = {"whiten": {"bias": jnp.zeros(2)}, "head": {"kernel": jnp.zeros((2, 2))}}
  grads = jax.tree.map(jnp.ones_like, params)
  state, rates = tx.init(params), []
  for _ in range(6):
    u, state = tx.update(grads, state, params)
    rates.append((-float(u["whiten"]["bias"][0]), -float(u["head"]["kernel"][0, 0])))
  assert [b for b, _ in rates] == pytest.approx([1, 0.75, 0.5, 0.25, 0, 0], abs=1e-6)
  assert [h for _, h in rates] == pytest.approx([1 - s / 8 for s in range(6)], abs=1e-6)
  c.freeze = ""
  with pytest.raises(optim.ParameterSpecError, match="freeze_anneal anneals.*names none"):
    optim.create_optimizer(c, optim.create_schedule(c, 2))


def test_wd_mults_decay_the_named_parameters_biases_too():
  c = _config(optimizer="sgd", learning_rate=1.0, momentum=0.0, schedule="constant",
              weight_decay=0.1, wd_mults="*/norm*/bias:3, head/kernel:0")
  tx = optim.create_optimizer(c, optim.create_schedule(c, 1))
  params = {"g1": {"norm1": {"bias": jnp.full(3, 2.0)}, "conv": {"kernel": jnp.full((3, 3), 2.0)}},
            "head": {"kernel": jnp.full((3, 2), 2.0), "bias": jnp.full(2, 2.0)}}
  zeros = jax.tree.map(jnp.zeros_like, params)
  updates, _ = tx.update(zeros, tx.init(params), params)  # only the decay moves them
  got = jax.tree.map(lambda u: float(u.ravel()[0]), updates)
  assert got == {"g1": {"norm1": {"bias": pytest.approx(-0.6)},  # 0.1 * 3 * 2
                        "conv": {"kernel": pytest.approx(-0.2)}},  # a kernel: 0.1 * 2
                 "head": {"kernel": 0.0, "bias": 0.0}}  # named at 0; a bias, not named
  for name in ("adamw", "lamb"):  # their decay is decoupled: the multipliers do not apply
    c.optimizer = name
    with pytest.raises(optim.ParameterSpecError, match=f"wd_mults.*{name!r}"):
      optim.create_optimizer(c, optim.create_schedule(c, 1))


def test_parameter_spec_errors_name_the_field_and_entry():
  params = {"whiten": {"kernel": jnp.ones((2, 2, 1, 8))}, "head": {"kernel": jnp.ones((8, 3))}}
  for field, spec, match in (
      ("freeze", "whitn/kernel", "config.freeze: 'whitn/kernel' names no parameter.*under head, whiten"),
      ("freeze", "whiten/ker", "names no parameter"),  # whole path components only
      ("freeze", "whiten:x", "must be a number"), ("freeze", "whiten:-1", ">= 0"),
      ("freeze", "whiten,*/kernel", "whiten/kernel is named by 'whiten' and '\\*/kernel'"),
      ("lr_mults", "head", "config.lr_mults: 'head' needs a value"),
      ("lr_mults", "head:2,heads:3", "'heads' names no parameter"),
      ("wd_mults", "head/bias:2", "config.wd_mults: 'head/bias' names no parameter")):
    c = _config(**{field: spec})
    with pytest.raises(optim.ParameterSpecError, match=match):
      optim.create_optimizer(c, optim.create_schedule(c, 1)).init(params)
