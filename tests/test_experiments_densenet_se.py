"""experiments/densenet_se.py: the two-part verdict rule on synthetic measurements, the
sweeps' nets, and the analysis of hand-made run directories."""

import csv
import json
import os
import statistics

import pytest

from experiments import densenet_se


def _m(dense=(90.0, 0.3, 130_000), res=(90.0, 0.3, 270_000), plain=(88.0, 0.2, 175_000),
       se=(89.0, 0.2, 179_000)):
  keys = ("mean", "std", "params")
  return {"arms": {"densenet": dict(zip(keys, dense)), "resnet": dict(zip(keys, res)),
                   "plain": dict(zip(keys, plain)), "se": dict(zip(keys, se))}}


def test_densenet_part_of_the_rule():
  judge = densenet_se.DenseNetSE.judge_densenet
  assert judge(_m()) == "holds"  # 2.1x fewer params, same accuracy
  assert judge(_m(dense=(89.5, 0.3, 130_000))) == "holds"  # gap 0.5 < spread 0.6
  assert judge(_m(dense=(89.3, 0.3, 130_000))) == "holds in direction only"
  assert judge(_m(dense=(88.4, 0.3, 130_000))) == "holds in direction only"  # 1.6
  assert judge(_m(dense=(88.3, 0.3, 130_000))) == "does not hold"  # 1.7 > 0.6 + 1
  assert judge(_m(dense=(90.0, 0.3, 180_001))) == "holds in direction only"  # 1.49x
  assert judge(_m(dense=(91.0, 0.3, 180_000))) == "holds"  # exactly 1.5x, better
  assert judge(_m(dense=(95.0, 0.3, 270_000))) == "does not hold"  # not fewer params


def test_se_part_of_the_rule():
  judge = densenet_se.DenseNetSE.judge_se
  assert judge(_m()) == "holds"  # gain 1.0 > 0.4, +2.3% params
  assert judge(_m(se=(88.3, 0.2, 179_000))) == "holds in direction only"  # 0.3 < 0.4
  assert judge(_m(se=(89.0, 0.2, 202_000))) == "holds in direction only"  # +15.4% params
  assert judge(_m(se=(89.0, 0.2, 201_000))) == "holds"  # +14.9%
  assert judge(_m(se=(88.0, 0.2, 179_000))) == "does not hold"  # a tie
  assert judge(_m(se=(87.0, 0.0, 179_000))) == "does not hold"


def test_the_entry_takes_the_weaker_part():
  judge = densenet_se.DenseNetSE().judge
  assert judge(_m()) == "holds"
  assert judge(_m(se=(88.3, 0.2, 179_000))) == "holds in direction only"
  assert judge(_m(dense=(88.3, 0.3, 130_000))) == "does not hold"
  assert judge(_m(dense=(88.3, 0.3, 130_000), se=(89.0, 0.0, 179_000))) == "does not hold"


def test_cpu_sweep_trains_four_nets_over_three_seeds_with_one_recipe():
  (cpu,) = densenet_se.DenseNetSE().sweeps("cpu")
  assert cpu.config == "configs/resnet20_cifar.py:fashion_mnist,short"
  by_role = {}
  for r in cpu.runs:
    by_role.setdefault(r["name"].split("_seed")[0], []).append(r)
  assert set(by_role) == set(densenet_se.ROLES)
  assert {len(v) for v in by_role.values()} == {3}
  models = {role: {r["model"] for r in runs} for role, runs in by_role.items()}
  assert models == {"densenet": {"densenet40_k12"}, "resnet": {"resnet20"},
                    "plain": {"resnet18"}, "se": {"se_resnet18"}}
  # SE and plain differ only in the SE blocks.
  strip = lambda r: {k: v for k, v in r.items() if k not in ("model", "name")}
  assert [strip(r) for r in by_role["plain"]] == [strip(r) for r in by_role["se"]]
  full = densenet_se.DenseNetSE().sweeps("full")
  assert [s.config for s in full] == ["configs/densenet121.py:cifar",
                                      "configs/se_resnet50.py:batch=256"]


FASHION = "npz:/x/fashion_mnist/fashion_mnist.npz"
# role -> (model, params, test accuracies % of seeds 0 and 1)
FAKE = {"densenet": ("densenet40_k12", 100_000, (90.0, 91.0)),
        "resnet": ("resnet20", 250_000, (91.0, 92.0)),
        "plain": ("resnet18", 200_000, (88.0, 88.5)),
        "se": ("se_resnet18", 240_000, (89.0, 89.5))}


def _fake_run(sweep_dir, role, seed, finished=True):
  """A train.py workdir of ``role``'s net at ``seed`` (finished unless told)."""
  model, params, accs = FAKE[role]
  name = f"{role}_seed{seed}"
  workdir = os.path.join(sweep_dir, name)
  os.makedirs(workdir)
  rows = [{"step": 10, "epoch": 1, "train_loss": 1.0, "train_accuracy": 0.5,
           "learning_rate": 0.1},
          {"step": 20, "epoch": 2, "eval_top1": accs[seed] / 100, "eval_loss": 0.5}]
  with open(os.path.join(workdir, "metrics.jsonl"), "w") as f:
    f.write("".join(json.dumps(r) + "\n" for r in rows))
  with open(os.path.join(workdir, "summary.json"), "w") as f:
    json.dump({"step": 20 if finished else 10, "total_steps": 20,
               "eval_top1": accs[seed] / 100, "num_params": params, "model": model,
               "dataset": FASHION, "wall_time_sec": 1.0}, f)
  return {"name": name, "workdir": workdir,
          "overrides": {"model": model, "seed": str(seed), "name": name}}


def _sweep(tmp_path, unfinished=()):
  sweep_dir = str(tmp_path / "nets")
  runs = [_fake_run(sweep_dir, role, seed, finished=(role, seed) not in unfinished)
          for role in densenet_se.ROLES for seed in (0, 1)]
  with open(os.path.join(sweep_dir, "sweep.json"), "w") as f:
    json.dump({"runs": runs}, f)
  return sweep_dir


def test_analyze_on_hand_made_runs(tmp_path):
  e = densenet_se.DenseNetSE()
  out = tmp_path / "out"
  result = e.analyze("cpu", {"nets": _sweep(tmp_path)}, str(out))
  m = result.measurements
  sd = statistics.stdev  # of two seeds half a point apart: 0.354; one point: 0.707
  assert m["arms"]["densenet"]["mean"] == pytest.approx(90.5)
  assert m["arms"]["densenet"]["std"] == pytest.approx(sd([90.0, 91.0]))
  assert m["arms"]["se"]["accuracies"] == pytest.approx([89.0, 89.5])
  assert m["densenet_params_ratio"] == 2.5
  assert m["densenet_gap"] == pytest.approx(1.0)  # within the spread 1.41: holds
  assert m["se_gain"] == pytest.approx(1.0)  # more than the spread 0.71, but +20% params
  assert m["se_params_increase"] == pytest.approx(0.2)
  assert m["verdict_densenet"] == "holds"
  assert m["verdict_se"] == "holds in direction only"
  assert result.verdict == "holds in direction only"  # the weaker of the two
  assert m["seeds"] == 2 and m["datasets"] == ["Fashion-MNIST"]
  assert m["models"] == {role: FAKE[role][0] for role in densenet_se.ROLES}
  with open(out / "results.csv") as f:
    rows = {r["net"]: r for r in csv.DictReader(f)}
  assert list(rows) == ["DenseNet", "ResNet (CIFAR)", "ResNet", "SE-ResNet"]
  for role, label in densenet_se.LABELS.items():
    model, params, accs = FAKE[role]
    r = rows[label]
    assert (r["model"], int(r["params"]), r["seeds"]) == (model, params, "2")
    assert float(r["accuracy % (mean)"]) == pytest.approx(sum(accs) / 2)
    assert float(r["std"]) == pytest.approx(sd(accs))
    assert r["accuracies"] == " ".join(f"{a:.2f}" for a in accs)
  assert result.ours == (
      "DenseNet 90.5% with 2.5x fewer params than ResNet 91.5% (holds); SE +1.00 points "
      "for +20.0% params (holds in direction only) (2 seeds, Fashion-MNIST, "
      "densenet40_k12 vs resnet20, se_resnet18 vs resnet18)")
  assert (out / "accuracy_vs_params.png").stat().st_size > 10_000
  assert result.files == ["results.md", "results.csv", "accuracy_vs_params.png"]


def test_analyze_counts_only_finished_runs(tmp_path):
  e = densenet_se.DenseNetSE()
  # One SE seed stopped early: the arm has one seed, its std 0.
  result = e.analyze("cpu", {"nets": _sweep(tmp_path, unfinished={("se", 1)})},
                     str(tmp_path / "out"))
  se = result.measurements["arms"]["se"]
  assert (se["mean"], se["std"], se["seeds"]) == (pytest.approx(89.0), 0.0, 1)
  assert result.measurements["seeds"] == 1
  assert result.measurements["se_gain"] == pytest.approx(0.75)  # within 0.35 + 0: direction
  assert result.measurements["verdict_se"] == "holds in direction only"
  with pytest.raises(RuntimeError, match="no finished run of 'se'"):
    e.analyze("cpu", {"nets": _sweep(tmp_path / "b", unfinished={("se", 0), ("se", 1)})},
              str(tmp_path / "out_b"))
