"""Stochastic diagonal Levenberg-Marquardt: the curvature estimate and the optimizer."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import models
import train
from configs import common
from input_pipeline import recipe as recipe_lib
from training import config as config_lib
from training import data as data_lib
from training import optim, sdlm, steps


def _normal(i, shape):
  return jax.random.normal(jax.random.key(i), shape)


def test_one_step_is_newtons_step_on_a_separable_quadratic():
  # y = s * w, E = 1/2 sum (y - t)^2: the Hessian is diag(s^2), the minimum w = t / s.
  s, t, w0 = _normal(0, (5,)) * 3, _normal(1, (5,)), _normal(2, (5,))
  fn = lambda w: s * w
  h = sdlm.diagonal_gauss_newton(fn, [w0], jnp.ones(5))[0]
  np.testing.assert_allclose(h, s ** 2, rtol=1e-6)
  grad = jax.grad(lambda w: 0.5 * jnp.sum((fn(w) - t) ** 2))(w0)
  tx = sdlm.sdlm(1.0, mu=1e-9)
  state = sdlm.set_hessian(tx.init(w0), h)
  updates, _ = tx.update(grad, state)
  np.testing.assert_allclose(w0 + updates, t / s, rtol=1e-4, atol=1e-5)
  # With mu large against h it is gradient descent at eta / mu.
  tx = sdlm.sdlm(1.0, mu=1e6)
  updates, _ = tx.update(grad, sdlm.set_hessian(tx.init(w0), h))
  np.testing.assert_allclose(updates, -grad / 1e6, rtol=1e-4)


def test_a_linear_layer_gets_the_exact_hessian_diagonal():
  # For a linear map and a squared loss Gauss-Newton is exact, and without sharing the
  # diagonal approximation drops nothing the diagonal holds: compare with jax.hessian.
  x, t, w = _normal(0, (6, 4)), _normal(1, (6, 3)), _normal(2, (4, 3))
  loss = lambda w: 0.5 * jnp.sum((x @ w - t) ** 2)
  exact = jnp.diagonal(jax.hessian(loss)(w).reshape(12, 12)).reshape(4, 3)
  h = sdlm.diagonal_gauss_newton(lambda w: x @ w, [w], jnp.ones((6, 3)))[0]
  np.testing.assert_allclose(h, exact, rtol=1e-5)


def test_curvature_backpropagates_with_squared_derivatives():
  # The paper's recursion by hand for a tanh network: h_a = f'(a)^2 sum_k w_k^2 h_k,
  # h_w = h_a x^2.
  x, w1, w2 = _normal(0, (5, 4)), _normal(1, (4, 3)), _normal(2, (3, 2))
  seed = jnp.abs(_normal(3, (5, 2)))
  fn = lambda p, x: jnp.tanh(x @ p["w1"]) @ p["w2"]
  h, hx = sdlm.diagonal_gauss_newton(fn, [{"w1": w1, "w2": w2}, x], seed)
  z = jnp.tanh(x @ w1)
  h_a = (1 - z ** 2) ** 2 * (seed @ (w2 ** 2).T)
  np.testing.assert_allclose(h["w2"], (z ** 2).T @ seed, rtol=1e-5)
  np.testing.assert_allclose(h["w1"], (x ** 2).T @ h_a, rtol=1e-5)
  np.testing.assert_allclose(hx, h_a @ (w1 ** 2).T, rtol=1e-5)


def test_a_shared_weight_sums_its_connections():
  # A 3-tap convolution (shared weights) against the same network with one free copy of
  # the kernel per output position (a locally connected layer): the shared weight's
  # curvature is the sum over the positions, as the paper says, not the square of a sum.
  x, w = _normal(0, (2, 10, 1)), _normal(1, (3, 1, 1))
  seed = jnp.abs(_normal(2, (2, 8, 1)))

  def conv(w, x):
    return jax.lax.conv_general_dilated(x, w, (1,), "VALID",
                                        dimension_numbers=("NWC", "WIO", "NWC"))

  def untied(ws, x):
    return jnp.stack([(x[:, i:i + 3, 0] * ws[i]).sum(-1) for i in range(8)], 1)[..., None]

  shared = sdlm.diagonal_gauss_newton(conv, [w, x], seed)[0][:, 0, 0]
  free = sdlm.diagonal_gauss_newton(untied, [jnp.tile(w[:, 0, 0], (8, 1)), x], seed)[0]
  np.testing.assert_allclose(shared, free.sum(0), rtol=1e-5)
  # ... and it is not the exact Gauss-Newton diagonal, which has the cross terms.
  jac = jax.jacobian(lambda w: conv(w, x))(w)[..., 0, 0].reshape(16, 3)
  exact = jnp.einsum("ok,o->k", jac ** 2, seed.reshape(16))
  np.testing.assert_allclose(shared, exact, rtol=1e-5)  # one output per connection here
  # Two connections of one weight into the same unit: the paper drops the cross term.
  both = lambda w, x: (w * x[:, 0] + w * x[:, 1])[:, None]
  xs = jnp.array([[1.0, 2.0]])
  h = sdlm.diagonal_gauss_newton(both, [jnp.ones(()), xs], jnp.ones((1, 1)))[0]
  assert float(h) == pytest.approx(1.0 ** 2 + 2.0 ** 2)  # not (1 + 2)^2


@pytest.mark.parametrize("name,shape,loss", [("lenet5", (32, 32, 1), "cross_entropy"),
                                             ("lenet1989", (16, 16, 1), "mse")])
def test_the_lenets_get_a_positive_estimate_for_every_weight(name, shape, loss):
  model = models.create_model(name, num_classes=10)
  c = common.base()
  c.optimizer, c.learning_rate = "sdlm", 5e-4
  tx = optim.create_optimizer(c, optim.create_schedule(c, 10))
  state = steps.init_state(model, tx, jax.random.key(0), shape)
  images = jax.random.randint(jax.random.key(1), (16, *shape), 0, 256).astype(jnp.uint8)
  labels = jnp.arange(16) % 10
  ops = (recipe_lib.op("normalize", mean=(0.5,), std=(0.25,)),)
  step = sdlm.make_curvature_step(model, loss, ops, jax.random.key(2))
  new = jax.jit(step)(state, images, labels)
  h = sdlm.get_hessian(new.opt_state)
  assert jax.tree.structure(h) == jax.tree.structure(state.params)
  for leaf in jax.tree.leaves(h):
    assert np.all(np.isfinite(leaf)) and np.all(np.asarray(leaf) >= 0)
    assert np.any(np.asarray(leaf) > 0)
  assert np.all(np.asarray(jax.tree.leaves(sdlm.get_hessian(state.opt_state))[0]) == 0)


def test_the_mle_curvature_gives_f6_twice_its_squared_slope():
  # rbf_mle: d2(y_D)/dx2 = 2 per unit of F6's state x = f(a), so F6's bias (da/db = 1)
  # gets the mean over patterns of 2 f'(a)^2, and nothing of the RBF codes or the labels.
  model = models.create_model("lenet5", num_classes=10, weight_init="sqrt_fan_in")
  images = jax.random.normal(jax.random.key(0), (8, 32, 32, 1))  # as normalised
  labels = jnp.arange(8) % 10
  c = common.base()
  c.optimizer, c.learning_rate = "sdlm", 5e-4
  tx = optim.create_optimizer(c, optim.create_schedule(c, 10))
  state = steps.init_state(model, tx, jax.random.key(1), (32, 32, 1))
  step = sdlm.make_curvature_step(model, "cross_entropy", (), jax.random.key(2), "rbf_mle")
  h = sdlm.get_hessian(jax.jit(step)(state, images, labels).opt_state)
  _, sown = model.apply({"params": state.params}, images, train=False,
                        capture_intermediates=True, mutable=["intermediates"])
  a = sown["intermediates"]["F6"]["__call__"][0].reshape(8, 84)
  slope = 1.7159 * (2 / 3) * (1 - jnp.tanh(2 * a / 3) ** 2)  # the scaled tanh's f'
  np.testing.assert_allclose(h["F6"]["bias"], jnp.mean(2 * slope ** 2, 0), rtol=1e-5)
  h_other = sdlm.get_hessian(jax.jit(step)(state, images, (labels + 3) % 10).opt_state)
  np.testing.assert_allclose(h_other["C1"]["kernel"], h["C1"]["kernel"], rtol=1e-6)
  with pytest.raises(ValueError, match="needs a network with LeNet-5's RBF output"):
    modern = models.create_model("lenet5_modern", num_classes=10)
    m_state = steps.init_state(modern, tx, jax.random.key(1), (28, 28, 1))
    sdlm.make_curvature_step(modern, "cross_entropy", (), jax.random.key(2), "rbf_mle")(
        m_state, images[:, :28, :28], labels)


def test_a_curvature_of_the_wrong_shape_is_refused():
  # (4, 1, 3) against (4, 3) would broadcast to (4, 4, 3) and sum across patterns.
  with pytest.raises(ValueError, match=r"h_out has shape \(4, 3\).*\(4, 1, 3\)"):
    sdlm.diagonal_gauss_newton(lambda w: jnp.ones((4, 1, 1)) * w, [jnp.ones(3)],
                               jnp.ones((4, 3)))


def test_an_operation_without_a_rule_is_named():
  with pytest.raises(sdlm.UnsupportedPrimitive, match="'cumlogsumexp'"):
    sdlm.diagonal_gauss_newton(lambda x: jax.lax.cumlogsumexp(x), [jnp.ones(3)],
                               jnp.ones(3))


@pytest.mark.parametrize("spec", ["configs/lenet5.py:per_pattern",
                                  "configs/lenet5.py:distort,per_pattern"])
def test_per_pattern_lenet5_takes_the_curvature_and_init_that_keep_it_stable(spec):
  config_lib.check(spec, [])
  c = config_lib.load_config(spec)
  assert (c.batch_size, c.sdlm.curvature, c.model_kwargs.weight_init, c.map_j) == (
      1, "rbf_mle", "sqrt_fan_in", 5.0)
  assert c.optimizer == "sdlm" and c.learning_rate == 5e-4  # the paper's eta, per pattern
  with pytest.raises(config_lib.ConfigError, match="'per_pattern' is the faithful net's"):
    config_lib.check("configs/lenet5.py:modern,per_pattern", [])


def test_the_lenet5_schedule_has_one_factor_per_boundary():
  c = common.base()
  c.schedule, c.learning_rate = "step", 5e-4
  c.decay_epochs, c.decay_factors = (2, 5, 8, 12), (0.4, 0.5, 0.5, 0.2)
  s = optim.create_schedule(c, steps_per_epoch=10)
  got = [float(s(10 * e)) for e in (0, 1, 2, 4, 5, 7, 8, 11, 12, 19)]
  assert got == pytest.approx([5e-4, 5e-4, 2e-4, 2e-4, 1e-4, 1e-4, 5e-5, 5e-5, 1e-5, 1e-5])


@pytest.mark.parametrize("overrides,message", [
    ([("sdlm.mu", "0.1")], "config.sdlm.mu is set but optimizer=sgd"),
    ([("optimizer", "sdlm"), ("sdlm.mu", "0")], "config.sdlm.mu must be positive"),
    ([("optimizer", "sdlm"), ("sdlm.curvature", "rbf_mle")],
     "sdlm.curvature='rbf_mle' is the curvature of LeNet-5's RBF output; model=lenet1989"),
    ([("optimizer", "sdlm"), ("sdlm.curvature", "mle")],
     "config.sdlm.curvature='mle' is not one of loss, rbf_mle"),
    ([("schedule", "step"), ("decay_epochs", "(2, 5)"), ("decay_factors", "(0.5,)")],
     "decay_factors has 1 factors for 2 decay_epochs"),
])
def test_sdlm_config_mistakes_are_one_line(overrides, message):
  with pytest.raises(config_lib.ConfigError, match=message):
    config_lib.check("configs/lenet1989.py:tiny", overrides)


def test_sdlm_needs_the_data_on_the_device():
  with pytest.raises(config_lib.ConfigError, match="optimizer=sdlm estimates its curvature"):
    config_lib.check("configs/convnext_t.py:tiny",
                     [("optimizer", "sdlm"), ("input_pipeline", "host")])


def test_the_effective_rates_span_the_estimate():
  tx = sdlm.sdlm(5e-4, mu=0.02)
  state = sdlm.set_hessian(tx.init({"a": jnp.zeros(2), "b": jnp.zeros(())}),
                           {"a": jnp.array([0.0, 0.02]), "b": jnp.array(1.0)})
  r = sdlm.rate_range(5e-4, sdlm.curvature_stats(state, 0.02), 0.02)
  assert r["sdlm_rate_max"] == pytest.approx(5e-4 / 0.02)
  assert r["sdlm_rate_min"] == pytest.approx(5e-4 / 1.02)
  assert r["sdlm_h_below_mu"] == pytest.approx(1 / 3)  # 0.02 itself is not below mu


def test_the_loop_estimates_before_each_pass_and_not_on_resume(tmp_path, monkeypatch,
                                                                capsys):
  calls = []
  real = data_lib.DeviceSource.pass_start

  def counting(self, fn, state, epoch):
    calls.append((epoch, int(state.step)))
    return real(self, fn, state, epoch)

  monkeypatch.setattr(data_lib.DeviceSource, "pass_start", counting)
  args = ["--config", "configs/lenet5.py:tiny", "--workdir", str(tmp_path / "w"),
          "--config.optimizer=sdlm", "--config.learning_rate=0.0005",
          "--config.sdlm.num_samples=64", "--config.num_epochs=2"]
  assert train.main(args + ["--config.stop_after_steps=6"]) == 0
  assert calls == [(0, 0), (1, 4)]  # 4 steps per pass: the second pass starts at step 4
  out = capsys.readouterr().out
  assert "[sdlm]  pass 1/2 | effective rates eta/(mu+h)" in out and "[sdlm]  pass 2/2" in out
  rows = [json.loads(line) for line in (tmp_path / "w" / "metrics.jsonl").open()]
  rated = [r for r in rows if "sdlm_rate_min" in r]
  logged = [r["step"] for r in rows if "train_loss" in r]
  # read at the first log point after each pass start (steps 0 and 4)
  assert [r["step"] for r in rated] == [min(s for s in logged if s > p) for p in (0, 4)]
  for r in rated:  # every rate lies between eta / (mu + max h) and eta / mu
    assert 0 < r["sdlm_rate_min"] <= r["sdlm_rate_max"] <= 0.0005 / 0.02 + 1e-12
    assert 0 <= r["sdlm_h_below_mu"] <= 1
  calls.clear()
  assert train.main(args) == 0  # resumes at step 6, inside pass 1: its estimate is kept
  assert calls == []
