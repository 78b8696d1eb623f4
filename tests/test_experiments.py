"""experiments/: every entry's sweeps expand into valid runs, the verdict rules on
synthetic measurements, and one entry end to end."""

import json
import os

import numpy as np
import pytest

import experiments
from experiments import cost_vs_resolution
from experiments import entry as entry_lib
from experiments import lecun1989
from experiments import run as run_lib
from launch import sweep as sweep_lib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _shared_data(root):
  """../shared/data's files in their real shapes (few images), so the cpu budget's runs
  are checked where the real data is absent (CI)."""
  for name, side, n_train in (("usps", 16, 400), ("mnist", 28, 400),
                              ("fashion_mnist", 28, 400)):
    rng = np.random.default_rng(0)
    os.makedirs(root / "data" / name, exist_ok=True)
    np.savez(root / "data" / name / f"{name}.npz",
             x_train=rng.integers(0, 256, (n_train, side, side, 1), np.uint8),
             y_train=np.arange(n_train, dtype=np.uint8) % 10,
             x_test=rng.integers(0, 256, (100, side, side, 1), np.uint8),
             y_test=np.arange(100, dtype=np.uint8) % 10)


@pytest.mark.parametrize("budget", ["tiny", "cpu"])
@pytest.mark.parametrize("e", experiments.ENTRIES, ids=lambda e: e.id)
def test_every_sweep_expands_into_checked_runs(e, budget, tmp_path, capsys, monkeypatch):
  monkeypatch.chdir(ROOT)
  _shared_data(tmp_path / "shared")
  monkeypatch.setenv("SHARED_DIR", str(tmp_path / "shared"))
  for s in e.sweeps(budget):
    # --dry-run: every run's config loaded, overridden and checked (traced, not compiled).
    assert sweep_lib.main([*s.command(str(tmp_path / s.name)), "--dry-run"]) == 0, \
        capsys.readouterr().err
    assert not os.path.exists(tmp_path / s.name)  # a dry run writes nothing


def test_entries_state_claim_source_metric_and_rule():
  ids = [e.id for e in experiments.ENTRIES]
  assert len(set(ids)) == len(ids)
  for e in experiments.ENTRIES:
    for field in ("title", "claim", "source", "paper", "metric", "rule"):
      assert getattr(e, field), (e.id, field)


def _errors(**nets):
  return {"errors": {int(k[-1]): v for k, v in nets.items()}}


def test_lecun1989_rule():
  judge = lecun1989.LeCun1989().judge
  base = dict(n1=(14.6, 0.2), n2=(15.2, 0.2), n3=(17.4, 0.5), n4=(16.8, 0.2))
  assert judge(_errors(**base, n5=(13.3, 0.3))) == "holds"  # lead 1.3 > 0.3 + 0.2
  assert judge(_errors(**base, n5=(14.3, 0.3))) == "holds in direction only"  # 0.3 < 0.5
  assert judge(_errors(**base, n5=(14.7, 0.3))) == "does not hold"  # net-1 is better


def test_cost_vs_resolution_rule():
  judge = cost_vs_resolution.CostVsResolution().judge
  assert judge({"slope": {"vit_b16": 1.2, "convnext_t": 1.0}}) == "holds"
  assert judge({"slope": {"vit_b16": 1.05, "convnext_t": 1.0}}) == "holds in direction only"
  assert judge({"slope": {"vit_b16": 1.2, "convnext_t": 1.1}}) == "holds in direction only"
  assert judge({"slope": {"vit_b16": 0.95, "convnext_t": 1.0}}) == "does not hold"


def test_a_result_takes_only_the_three_verdicts():
  with pytest.raises(ValueError, match="verdict"):
    entry_lib.Result({}, "mostly holds", "x")


def test_an_entry_end_to_end_writes_its_tables_plot_and_the_report(tmp_path, capsys):
  report = tmp_path / "report"
  assert run_lib.main(["--budget", "tiny", "--only", "cost_vs_resolution", "--runs_dir",
                       str(tmp_path / "runs"), "--report", str(report)]) == 0
  out = capsys.readouterr().out
  entry_dir = tmp_path / "runs" / "tiny" / "cost_vs_resolution"
  with open(entry_dir / "results.csv") as f:
    lines = f.read().splitlines()
  assert lines[0].startswith("side,pixels,vit_tokens,vit_gmacs")
  assert len(lines) == 1 + len(cost_vs_resolution.RESOLUTIONS["tiny"])
  # ConvNeXt-T at 64 px: 16x the multiply-adds of 32 px, less its fixed head.
  side32, side64 = (dict(zip(lines[0].split(","), l.split(","))) for l in lines[1:])
  assert 3.9 < float(side64["convnext_gmacs"]) / float(side32["convnext_gmacs"]) < 4.1
  assert "claim: ViT's multiply-adds" in out and "| measured: slope" in out
  text = (report / "README.md").read_text()
  assert "| 1 | ViT's multiply-adds" in text
  assert (report / "cost_vs_resolution_macs_vs_resolution.png").stat().st_size > 10_000


def test_an_unknown_entry_is_one_line(capsys):
  with pytest.raises(SystemExit) as e:
    run_lib.main(["--only", "alexnet_relu_typo"])
  assert e.value.code == 2
  err = capsys.readouterr().err
  assert "no experiment 'alexnet_relu_typo'" in err and len(err.strip().splitlines()) == 1


def test_a_sweep_whose_runs_all_finished_is_not_started_again(tmp_path):
  sweep_dir = tmp_path / "nets"
  run = sweep_dir / "net1_seed0"
  run.mkdir(parents=True)
  (sweep_dir / "sweep.json").write_text(json.dumps(
      {"runs": [{"name": "net1_seed0", "workdir": str(run), "overrides": {}}]}))
  assert not run_lib._all_finished(str(sweep_dir))  # no summary yet
  (run / "summary.json").write_text(json.dumps({"step": 4, "total_steps": 8,
                                                "eval_top1": 0.5}))
  assert not run_lib._all_finished(str(sweep_dir))  # stopped half-way
  (run / "summary.json").write_text(json.dumps({"step": 8, "total_steps": 8,
                                                "eval_top1": 0.5}))
  assert run_lib._all_finished(str(sweep_dir))
  assert not run_lib._all_finished(str(tmp_path / "never_ran"))
