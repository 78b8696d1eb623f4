"""experiments/degradation.py: the verdict rule on synthetic measurements, the sweep, and
the analysis on hand-made run directories."""

import csv
import json
import os

import pytest

from experiments import degradation


def _m(plain20, plain56, res20, res56):
  """Train errors (mean, std) by kind and depth."""
  return {"train_error": {"plain": {20: plain20, 56: plain56},
                          "resnet": {20: res20, 56: res56}}}


def test_rule():
  judge = degradation.Degradation().judge
  # Plain-56 worse by 3 points (> 0.5 + 0.5), ResNet-56 better: the paper's picture.
  assert judge(_m((10.0, 0.5), (13.0, 0.5), (9.0, 0.3), (8.0, 0.3))) == "holds"
  assert judge(_m((10.0, 0.5), (13.0, 0.5), (9.0, 0.3), (9.0, 0.3))) == "holds"  # gap 0
  # ResNet-56 slightly worse, but by less than plain-56: shortcuts shrink the penalty.
  assert judge(_m((10.0, 0.5), (13.0, 0.5), (9.0, 0.3), (10.0, 0.3))) == \
      "holds in direction only"
  # Plain gap within the seeds' spread (1.0 < 0.6 + 0.6).
  assert judge(_m((10.0, 0.6), (11.0, 0.6), (9.0, 0.3), (8.0, 0.3))) == \
      "holds in direction only"
  # No degradation: plain-56 trains as well as plain-20.
  assert judge(_m((10.0, 0.5), (10.0, 0.5), (9.0, 0.3), (8.0, 0.3))) == "does not hold"
  # Depth hurts the ResNet as much as the plain net: the shortcuts did nothing.
  assert judge(_m((10.0, 0.5), (13.0, 0.5), (9.0, 0.3), (12.0, 0.3))) == "does not hold"
  # The depths are read from the measurements (the tiny budget's 8 and 14 layers).
  tiny = {"train_error": {"plain": {8: (5.0, 0.0), 14: (9.0, 0.0)},
                          "resnet": {8: (5.0, 0.0), 14: (4.0, 0.0)}}}
  assert judge(tiny) == "holds"


def test_sweeps_compare_only_depth_and_shortcuts():
  (sweep,) = degradation.Degradation().sweeps("cpu")
  runs = {r["name"]: r for r in sweep.runs}
  assert len(runs) == 12  # 2 depths x 2 kinds x 3 seeds
  assert runs["plain56_seed1"] == {"model": "resnet56", "model_kwargs.shortcut": "plain",
                                   "seed": "1", "name": "plain56_seed1"}
  assert runs["resnet20_seed2"]["model_kwargs.shortcut"] == "A"
  fixed = dict(sweep.fixed)
  assert fixed["dataset"].endswith("fashion_mnist.npz") and fixed["image_size"] == "16"


def _fake_run(sweep_dir, name, errors, params):
  """A finished train.py workdir whose training error (%) is ``errors``, 2 rows per epoch."""
  workdir = os.path.join(sweep_dir, name)
  os.makedirs(workdir)
  rows = [{"step": 10 * (i + 1), "epoch": (i + 1) / 2, "train_loss": 1.0,
           "train_accuracy": 1 - e / 100} for i, e in enumerate(errors)]
  with open(os.path.join(workdir, "metrics.jsonl"), "w") as f:
    f.write("".join(json.dumps(r) + "\n" for r in rows))
  steps = 10 * len(errors)
  with open(os.path.join(workdir, "summary.json"), "w") as f:
    json.dump({"step": steps, "total_steps": steps, "eval_top1": 0.5, "num_params": params,
               "model": "resnet20", "dataset": "npz:/x/fashion_mnist/fashion_mnist.npz",
               "wall_time_sec": 1.0}, f)
  return {"name": name, "workdir": workdir, "overrides": {}}


def test_analyze_reads_the_last_epochs_training_error(tmp_path):
  sweep_dir = str(tmp_path / "nets")
  runs = []
  for seed, shift in ((0, 0.0), (1, 2.0)):
    runs += [  # the last epoch's two rows are averaged
        _fake_run(sweep_dir, f"plain20_seed{seed}", [50, 30, 20, 10 + shift], 100),
        _fake_run(sweep_dir, f"plain56_seed{seed}", [60, 50, 40, 30 + shift], 300),
        _fake_run(sweep_dir, f"resnet20_seed{seed}", [50, 30, 12, 8 + shift], 100),
        _fake_run(sweep_dir, f"resnet56_seed{seed}", [50, 25, 8, 4 + shift], 300)]
  with open(os.path.join(sweep_dir, "sweep.json"), "w") as f:
    json.dump({"runs": runs}, f)
  e = degradation.Degradation()
  out = tmp_path / "out"
  result = e.analyze("cpu", {"nets": sweep_dir}, str(out))
  err = result.measurements["train_error"]
  assert err["plain"][56][0] == pytest.approx((35 + 36) / 2)  # mean of (40+30)/2, (40+32)/2
  assert err["resnet"][20][0] == pytest.approx((10 + 11) / 2)
  assert result.verdict == "holds"  # plain-56 worse by 20, ResNet-56 better
  with open(out / "results.csv") as f:
    rows = list(csv.DictReader(f))
  assert [r["net"] for r in rows] == ["plain-20", "plain-56", "resnet-20", "resnet-56"]
  assert [r["params"] for r in rows] == ["100", "300", "100", "300"]
  assert "(2 seeds, fashion_mnist)" in result.ours
  assert (out / "training_error.png").stat().st_size > 10_000
  assert set(result.files) == {"results.md", "results.csv", "training_error.png"}
