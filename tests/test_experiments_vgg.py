"""experiments/vgg.py: the verdict rule on synthetic measurements, the traced costs of
net B and its 5x5 version, and the entry end to end at the tiny budget."""

import csv
import os

import pytest

from experiments import run as run_lib
from experiments import vgg

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _m(b, five, rf_equal=True, params=(9_404_992, 10_860_672)):
  return {"errors": {"3x3": b, "single": five}, "rf_equal": rf_equal,
          "conv_params": {"3x3": params[0], "single": params[1]}}


def test_rule():
  judge = vgg.VGGStacks().judge
  assert judge(_m((10.0, 0.2), (11.0, 0.3))) == "holds"  # lead 1.0 > 0.2 + 0.3
  assert judge(_m((10.0, 0.2), (10.4, 0.3))) == "holds in direction only"  # 0.4 < 0.5
  assert judge(_m((10.0, 0.2), (10.5, 0.3))) == "holds in direction only"  # not > 0.5
  assert judge(_m((10.0, 0.2), (10.0, 0.3))) == "does not hold"  # no lead
  assert judge(_m((10.5, 0.2), (10.0, 0.3))) == "does not hold"  # the 5x5 net is better
  # The accuracy alone is not enough: the premises of Sec. 2.3 must hold too.
  assert judge(_m((10.0, 0.2), (12.0, 0.3), rf_equal=False)) == "does not hold"
  assert judge(_m((10.0, 0.2), (12.0, 0.3), params=(10, 10))) == "does not hold"


def test_paper_net_costs():
  cost = vgg.paper_net_costs()
  # Same receptive field after every pool: 6, 16, 36, 76, 156 pixels (net B at 224).
  assert cost["3x3"]["pool_fields"] == cost["single"]["pool_fields"] == (6, 16, 36, 76, 156)
  # Stage 5, 512 -> 512: two 3x3 (18C^2) against one 5x5 (25C^2), biases added.
  c = 512
  assert cost["3x3"]["stage_params"][5] == 2 * (9 * c * c + c)
  assert cost["single"]["stage_params"][5] == 25 * c * c + c
  assert cost["3x3"]["conv_params"] == 9_404_992 < cost["single"]["conv_params"]


def test_tiny_end_to_end(tmp_path, monkeypatch, capsys):
  monkeypatch.chdir(ROOT)
  e = vgg.VGGStacks()
  result, _ = run_lib.run_entry(e, "tiny", str(tmp_path))
  out_dir = tmp_path / "tiny" / "vgg_stacks"
  with open(out_dir / "results.csv") as f:
    rows = list(csv.DictReader(f))
  assert [r["net"] for r in rows] == [vgg.LABELS["3x3"], vgg.LABELS["single"]]
  # The trained nets differ: one 5x5 conv per stage of two 3x3 ones changes the count.
  assert int(rows[0]["trained params"]) != int(rows[1]["trained params"])
  assert rows[0]["RF after pools (B, 224)"] == rows[1]["RF after pools (B, 224)"]
  assert all(0 <= float(r["test error % (mean)"]) <= 100 for r in rows)
  assert result.verdict == e.judge(result.measurements)
  assert "1 seed," in result.ours and "receptive fields equal" in result.ours
  assert (out_dir / "stacks.png").stat().st_size > 10_000
  assert sorted(result.files) == ["results.csv", "results.md", "stacks.png"]
  assert e.verdict_line(result).startswith("claim: a stack of 3x3 convs")


def test_sweeps_vary_only_the_stack_and_seed():
  e = vgg.VGGStacks()
  for budget, seeds in (("tiny", 1), ("cpu", 3), ("full", 1)):
    (sweep,) = e.sweeps(budget)
    assert sorted(r["model_kwargs.stack"] for r in sweep.runs) == sorted(
        ["3x3", "single"] * seeds)
    assert len({r["name"] for r in sweep.runs}) == 2 * seeds
  assert dict(e.sweeps("cpu")[0].fixed)["dataset"].endswith("fashion_mnist.npz")
  with pytest.raises(KeyError):
    e.sweeps("huge")
