"""experiments/googlenet.py: the verdict rule on synthetic measurements, the traced costs
of GoogLeNet with naive and reduced modules, and the analysis of a (written) sweep."""

import csv
import json

from experiments import googlenet


def _m(ratio, reduced, naive):
  return {"mac_ratio": ratio, "accuracy": {"reduced": (reduced, 0.2), "naive": (naive, 0.3)}}


def test_rule():
  judge = googlenet.GoogLeNetReductions().judge
  assert judge(_m(7.9, 88.0, 88.5)) == "holds"  # 0.5 points lost, within 1
  assert judge(_m(7.9, 88.0, 89.0)) == "holds"  # exactly 1 point
  assert judge(_m(7.9, 89.0, 88.0)) == "holds"  # better
  assert judge(_m(2.0, 88.0, 88.0)) == "holds"  # exactly 2x
  assert judge(_m(7.9, 88.0, 89.5)) == "holds in direction only"  # 1.5 points lost
  assert judge(_m(1.5, 88.0, 88.0)) == "holds in direction only"  # cheaper, under 2x
  assert judge(_m(7.9, 88.0, 91.0)) == "holds in direction only"  # exactly 3 points
  assert judge(_m(7.9, 88.0, 91.5)) == "does not hold"  # 3.5 points lost
  assert judge(_m(1.0, 88.0, 88.0)) == "does not hold"  # no saving


def test_costs_grow_without_the_reductions():
  cost = googlenet.paper_net_costs(width=0.125, side=64)  # traced; small to be quick
  red, naive = cost["reduced"], cost["naive"]
  # Figure 2(a): the pooled input is passed on, so every module adds its input's width.
  assert red["channels"]["3a"] == 8 + 16 + 4 + 4  # Table 1's 64 128 32 32, at 1/8
  assert naive["channels"]["3a"] == 8 + 16 + 4 + 24  # + conv2's 192/8 channels
  assert naive["channels"]["3b"] == 16 + 24 + 12 + naive["channels"]["3a"]
  assert all(naive["modules"][k] > red["modules"][k] for k in red["modules"])
  assert naive["macs"] > 2 * red["macs"] and naive["params"] > 2 * red["params"]


def _fake_sweep(root, accuracies):
  """A sweep directory as launch/sweep.py leaves it, with the given final accuracies."""
  runs = []
  for towers, accs in accuracies.items():
    for seed, acc in enumerate(accs):
      name = f"{towers}_seed{seed}"
      workdir = root / name
      workdir.mkdir(parents=True)
      config = {"model": "googlenet", "dataset": "npz:/x/fashion_mnist.npz",
                "model_kwargs": {"towers": towers, "width": 0.125, "aux_logits": False}}
      (workdir / "config.json").write_text(json.dumps(config))
      (workdir / "summary.json").write_text(json.dumps(
          {"model": "googlenet", "dataset": config["dataset"], "num_params": 1000 + seed,
           "step": 10, "total_steps": 10, "eval_top1": acc, "wall_time_sec": 60.0,
           "image_shape": [32, 32, 1],
           "num_classes": 10}))
      runs.append({"name": name, "workdir": str(workdir),
                   "overrides": {"model_kwargs.towers": towers, "seed": str(seed)}})
  (root / "sweep.json").write_text(json.dumps({"runs": runs}))


def test_analyze_reads_the_sweep(tmp_path):
  e = googlenet.GoogLeNetReductions()
  _fake_sweep(tmp_path / "towers", {"reduced": [0.80, 0.82, 0.84],
                                    "naive": [0.86, 0.87, 0.88]})
  result = e.analyze("cpu", {"towers": str(tmp_path / "towers")}, str(tmp_path))
  m = result.measurements
  assert m["accuracy"]["reduced"][0] == 82.0 and m["accuracy"]["naive"][0] == 87.0
  assert m["seeds"] == 3 and m["dataset"] == "fashion_mnist"
  assert m["mac_ratio"] > 2  # the paper's GoogLeNet at 224
  assert result.verdict == "does not hold"  # 5 points lost
  with open(tmp_path / "results.csv") as f:
    rows = list(csv.DictReader(f))
  assert [r["modules"] for r in rows] == [googlenet.LABELS[t] for t in googlenet.TOWERS]
  assert float(rows[1]["trained MMACs"]) > float(rows[0]["trained MMACs"]) > 0
  assert int(rows[1]["output channels of 5b"]) > int(rows[0]["output channels of 5b"])
  assert (tmp_path / "reductions.png").stat().st_size > 10_000
  assert "82.00 +- 2.00% with reductions, 87.00 +- 1.00% naive (3 seeds" in result.ours
