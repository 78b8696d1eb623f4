"""experiments/mobilenet.py: the two verdict rules on synthetic measurements, the sweeps'
shape, and both analyses on hand-made run directories."""

import csv
import json
import os

import pytest

from experiments import mobilenet


def _separable(macs_ratio=8.0, params_ratio=7.0, loss=1.0):
  return {"macs_ratio": macs_ratio, "params_ratio": params_ratio, "loss": loss}


def test_separable_rule():
  judge = mobilenet.MobileNetSeparable().judge
  assert judge(_separable()) == "holds"
  assert judge(_separable(loss=-0.5)) == "holds"  # separable better: holds too
  assert judge(_separable(loss=2.0)) == "holds"  # the boundary is inclusive
  assert judge(_separable(loss=2.01)) == "holds in direction only"
  assert judge(_separable(loss=5.0)) == "holds in direction only"
  assert judge(_separable(loss=5.01)) == "does not hold"
  assert judge(_separable(macs_ratio=4.99)) == "does not hold"  # not cheap enough
  assert judge(_separable(params_ratio=4.99)) == "does not hold"
  assert judge(_separable(macs_ratio=5.0, params_ratio=5.0)) == "holds"


def _arms(linear, relu6):
  return {"arms": {"linear": dict(zip(("mean", "std"), linear)),
                   "relu6": dict(zip(("mean", "std"), relu6))}}


def test_linear_bottleneck_rule():
  judge = mobilenet.MobileNetV2Linear().judge
  assert judge(_arms((85.0, 0.2), (84.0, 0.3))) == "holds"  # lead 1.0 > 0.5
  assert judge(_arms((84.5, 0.2), (84.0, 0.3))) == "holds in direction only"  # 0.5 = 0.5
  assert judge(_arms((84.3, 0.2), (84.0, 0.3))) == "holds in direction only"
  assert judge(_arms((84.0, 0.2), (84.0, 0.3))) == "does not hold"  # a tie
  assert judge(_arms((83.0, 0.0), (84.0, 0.0))) == "does not hold"


@pytest.mark.parametrize("e,field,arms", [
    (mobilenet.MobileNetSeparable(), "model_kwargs.separable", {"separable": "True",
                                                                 "full": "False"}),
    (mobilenet.MobileNetV2Linear(), "model_kwargs.linear_bottleneck", {"linear": "True",
                                                                        "relu6": "False"})])
def test_sweeps_pair_the_option_over_seeds(e, field, arms):
  (cpu,) = e.sweeps("cpu")
  assert ":fashion_mnist,width=0.25" in cpu.config
  assert len(cpu.runs) == 2 * mobilenet.CPU_SEEDS >= 6
  for arm, value in arms.items():
    runs = [r for r in cpu.runs if r["name"].startswith(arm + "_seed")]
    assert {r[field] for r in runs} == {value}
    assert sorted(r["seed"] for r in runs) == ["0", "1", "2"]
  (full,) = e.sweeps("full")
  assert ":" not in full.config and not full.fixed  # the paper's ImageNet recipe as is
  assert e.sweeps("tiny")[0].config.endswith(":tiny")


FASHION = "npz:/x/fashion_mnist/fashion_mnist.npz"


def _fake_sweep(tmp_path, model, field, arms, monkeypatch):
  """Hand-made finished runs ``<arm>_seed<s>`` of ``model`` at width 0.25 on 32x32
  Fashion-MNIST; ``arms``: arm -> (value of ``field``, params, MACs, accuracies %). The
  MACs that launch/collect.py would trace from config.json are ``arms``' (by ``field``)."""
  sweep_dir = str(tmp_path / "nets")
  runs = []
  for arm, (value, params, _, accs) in arms.items():
    for seed, acc in enumerate(accs):
      name = f"{arm}_seed{seed}"
      workdir = os.path.join(sweep_dir, name)
      os.makedirs(workdir)
      with open(os.path.join(workdir, "config.json"), "w") as f:
        json.dump({"model": model, "dataset": FASHION, "seed": seed,
                   "model_kwargs": {"width_multiplier": 0.25, field: value}}, f)
      rows = [{"step": 50, "epoch": 1, "train_loss": 0.9, "train_accuracy": 0.7,
               "learning_rate": 0.1},
              {"step": 100, "epoch": 2, "eval_top1": acc / 100, "eval_loss": 0.4}]
      with open(os.path.join(workdir, "metrics.jsonl"), "w") as f:
        f.write("".join(json.dumps(r) + "\n" for r in rows))
      with open(os.path.join(workdir, "summary.json"), "w") as f:
        json.dump({"step": 100, "total_steps": 100, "eval_top1": acc / 100,
                   "num_params": params, "model": model, "dataset": FASHION,
                   "image_shape": [32, 32, 1], "num_classes": 10, "wall_time_sec": 1.0}, f)
      runs.append({"name": name, "workdir": workdir,
                   "overrides": {f"model_kwargs.{field}": str(value), "seed": str(seed),
                                 "name": name}})
  with open(os.path.join(sweep_dir, "sweep.json"), "w") as f:
    json.dump({"runs": runs}, f)
  macs = {value: m for value, _, m, _ in arms.values()}

  def fake_count_macs(config, shape, num_classes, cache):
    del cache
    assert (config["model"], shape, num_classes) == (model, (32, 32, 1), 10)
    return macs[config["model_kwargs"][field]]

  from launch import collect  # pylint: disable=g-import-not-at-top
  monkeypatch.setattr(collect, "count_macs", fake_count_macs)
  return sweep_dir


@pytest.mark.parametrize("full_macs,verdict", [(13_000_000, "holds in direction only"),
                                               (9_800_000, "does not hold")])
def test_separable_analyze_on_hand_made_runs(tmp_path, monkeypatch, full_macs, verdict):
  sweep_dir = _fake_sweep(tmp_path, "mobilenet_v1", "separable", {
      "separable": (True, 50_000, 2_000_000, (85.0, 86.0, 87.0)),
      "full": (False, 300_000, full_macs, (88.0, 88.5, 89.0))}, monkeypatch)
  e = mobilenet.MobileNetSeparable()
  out = tmp_path / "out"
  result = e.analyze("cpu", {"nets": sweep_dir}, str(out))
  m = result.measurements
  assert m["loss"] == pytest.approx(88.5 - 86.0)  # within 5 points, over 2
  assert m["params_ratio"] == 6.0 and m["macs_ratio"] == full_macs / 2_000_000
  assert m["arms"]["separable"]["std"] == pytest.approx(1.0)
  assert m["arms"]["full"]["std"] == pytest.approx(0.5)
  # The paper's networks, traced: Table 4's 569M / 4866M MACs and 4.2M / 29.3M params.
  assert m["paper_net"] == {"separable": (568_740_352, 4_231_976),
                            "full": (4_867_293_184, 29_294_088)}
  assert m["macs_ratio_224"] == pytest.approx(8.558, abs=1e-3)
  assert m["params_ratio_224"] == pytest.approx(29_294_088 / 4_231_976)
  assert (m["seeds"], m["dataset"], m["width"]) == (3, "Fashion-MNIST", "0.25")
  assert result.verdict == verdict  # 6.5x and 4.9x fewer MACs
  with open(out / "results.csv") as f:
    rows = {r["net"]: r for r in csv.DictReader(f)}
  sep, full = rows["MobileNet (separable)"], rows["Conv MobileNet"]
  assert (int(sep["params"]), int(sep["MACs"]), int(full["MACs"])) == (
      50_000, 2_000_000, full_macs)
  assert float(sep["accuracy % (mean)"]) == pytest.approx(86.0)
  assert float(full["std"]) == pytest.approx(0.5) and full["seeds"] == "3"
  assert int(sep["MACs @224, alpha 1"]) == 568_740_352
  assert int(full["params @224, alpha 1"]) == 29_294_088
  assert (float(full["paper top-1 %"]), int(full["paper MACs (M)"])) == (71.7, 4866)
  assert result.ours.startswith(
      f"+2.5 points lost (86.0 vs 88.5%) for {full_macs / 2e6:.1f}x fewer MACs, 6.0x fewer "
      "params (3 seeds, Fashion-MNIST, MobileNet v1 alpha 0.25); 8.56x / 6.92x at 224")
  assert (out / "accuracy_vs_macs.png").stat().st_size > 10_000
  assert result.files == ["results.md", "results.csv", "accuracy_vs_macs.png"]


def test_linear_bottleneck_analyze_on_hand_made_runs(tmp_path, monkeypatch):
  sweep_dir = _fake_sweep(tmp_path, "mobilenet_v2", "linear_bottleneck", {
      "linear": (True, 70_000, 3_000_000, (90.0, 91.0, 92.0)),
      "relu6": (False, 70_000, 3_000_000, (88.5, 89.0, 89.5))}, monkeypatch)
  e = mobilenet.MobileNetV2Linear()
  out = tmp_path / "out"
  result = e.analyze("cpu", {"nets": sweep_dir}, str(out))
  m = result.measurements
  assert m["lead"] == pytest.approx(2.0)  # more than the stds added, 1.0 + 0.5
  assert m["arms"]["linear"]["std"] == pytest.approx(1.0)
  assert m["arms"]["relu6"]["accuracies"] == pytest.approx([88.5, 89.0, 89.5])
  assert (m["seeds"], m["dataset"], m["width"]) == (3, "Fashion-MNIST", "0.25")
  assert result.verdict == "holds"
  with open(out / "results.csv") as f:
    rows = {r["bottleneck"]: r for r in csv.DictReader(f)}
  assert list(rows) == ["linear", "ReLU6"]
  assert float(rows["linear"]["accuracy % (mean)"]) == pytest.approx(91.0)
  assert float(rows["ReLU6"]["std"]) == pytest.approx(0.5)
  assert rows["ReLU6"]["accuracies"] == "88.50 89.00 89.50"
  assert (int(rows["linear"]["params"]), int(rows["linear"]["MACs"])) == (70_000, 3_000_000)
  assert result.ours == ("linear 91.00 +- 1.00% vs ReLU6 89.00 +- 0.50% (+2.00 points; "
                         "3 seeds, Fashion-MNIST, MobileNetV2 alpha 0.25)")
  assert (out / "accuracy_by_bottleneck.png").stat().st_size > 10_000
  assert result.files == ["results.md", "results.csv", "accuracy_by_bottleneck.png"]
