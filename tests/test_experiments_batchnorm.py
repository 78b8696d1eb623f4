"""experiments/batchnorm.py: the verdict rule on synthetic measurements, steps to a
target, and the analysis of hand-made runs (the end-to-end tiny run is
test_experiments_degradation.py's)."""

import csv
import json
import os

import pytest

from experiments import batchnorm


def _m(speedup, bn_high, plain_high):
  return {"speedup": speedup, "high_lr": {"vgg_bn": bn_high, "vgg": plain_high}}


def test_rule():
  judge = batchnorm.BatchNorm().judge
  assert judge(_m(5.0, (90.0, 1.0), (60.0, 5.0))) == "holds"
  assert judge(_m(3.0, (90.0, 1.0), (80.0, 5.0))) == "holds"  # the boundary: 3x
  # Fast, but at the high rate BN leads by less than the spread (5 < 2 + 4).
  assert judge(_m(5.0, (90.0, 2.0), (85.0, 4.0))) == "holds in direction only"
  assert judge(_m(2.9, (90.0, 1.0), (60.0, 5.0))) == "holds in direction only"
  assert judge(_m(1.0, (90.0, 1.0), (60.0, 5.0))) == "does not hold"  # no faster
  assert judge(_m(0.0, (90.0, 1.0), (60.0, 5.0))) == "does not hold"  # never reached
  assert judge(_m(5.0, (60.0, 1.0), (61.0, 1.0))) == "does not hold"  # BN worse at 5x


def test_steps_to_target():
  curve = [(20, 50.0), (40, 80.0), (60, 79.0), (80, 90.0)]
  assert batchnorm._steps_to(curve, 80.0) == 40
  assert batchnorm._steps_to(curve, 85.0) == 80
  assert batchnorm._steps_to(curve, 95.0) is None


def _fake_run(sweep_dir, name, accs):
  """A finished train.py workdir whose evaluations are ``accs`` (%) every 20 steps."""
  workdir = os.path.join(sweep_dir, name)
  os.makedirs(workdir)
  rows = [{"step": 20 * (i + 1), "epoch": i + 1, "eval_top1": a / 100}
          for i, a in enumerate(accs)]
  with open(os.path.join(workdir, "metrics.jsonl"), "w") as f:
    f.write("".join(json.dumps(r) + "\n" for r in rows))
  steps = 20 * len(accs)
  with open(os.path.join(workdir, "summary.json"), "w") as f:
    json.dump({"step": steps, "total_steps": steps, "eval_top1": accs[-1] / 100,
               "model": "vgg11", "dataset": "npz:/x/usps/usps.npz", "wall_time_sec": 1.0}, f)
  net, lr, seed = name.rsplit("_", 2)
  return {"name": name, "workdir": workdir,
          "overrides": {"model": net, "learning_rate": lr[2:], "seed": seed[4:]}}


def test_analyze_reads_steps_to_target_and_the_high_rate(tmp_path):
  sweep_dir = str(tmp_path / "nets")
  runs = []
  for seed, shift in ((0, 0.0), (1, 3.0)):
    runs += [  # no BN at 0.01 reaches its best (80 + shift) at step 100
        _fake_run(sweep_dir, f"vgg_lr0.01_seed{seed}", [10, 40, 60, 70, 80 + shift]),
        _fake_run(sweep_dir, f"vgg_bn_lr0.01_seed{seed}", [50, 70, 85, 88, 90]),  # step 60
        _fake_run(sweep_dir, f"vgg_lr0.05_seed{seed}", [10, 10, 11, 10, 10 + shift]),
        _fake_run(sweep_dir, f"vgg_bn_lr0.05_seed{seed}", [60, 82, 86, 90, 91])]  # step 40
  with open(os.path.join(sweep_dir, "sweep.json"), "w") as f:
    json.dump({"runs": runs}, f)
  out = tmp_path / "out"
  result = batchnorm.BatchNorm().analyze("cpu", {"nets": sweep_dir}, str(out))
  m = result.measurements
  assert m["speedups"] == [100 / 40, 100 / 60]  # seed 1: 83% is first passed at step 60
  assert m["speedup"] == pytest.approx((2.5 + 100 / 60) / 2)
  assert m["high_lr"]["vgg_bn"] == (91.0, 0.0)
  assert m["high_lr"]["vgg"][0] == pytest.approx(11.5)
  assert result.verdict == "holds in direction only"  # 2.1x < 3x
  assert "2.1x fewer steps" in result.ours and "(2 seeds, usps, VGG-11)" in result.ours
  with open(out / "results.csv") as f:
    rows = {(r["net"], r["lr"]): r for r in csv.DictReader(f)}
  assert rows["VGG-11-BN", "0.05"]["steps to target (per seed)"] == "40 60"
  assert rows["VGG-11", "0.05"]["steps to target (per seed)"] == "never never"
  assert (out / "accuracy.png").stat().st_size > 10_000
