"""experiments/alexnet.py: the two verdict rules on synthetic measurements, the step at
which the training error crosses the threshold, and both analyses on hand-made run
directories."""

import csv
import json
import os

import pytest

from experiments import alexnet


# ---------------------------------------------------------------------- alexnet_relu


def _steps(relu, tanh):
  return {"steps": {"relu": relu, "tanh": tanh}}


def test_relu_rule():
  judge = alexnet.AlexNetReLU().judge
  fast = [(200, True), (220, True), (240, True)]
  assert judge(_steps(fast, [(1300, True), (1400, True), (1500, True)])) == "holds"  # 6.4x
  # 3x exactly holds; just under 3x is direction only.
  assert judge(_steps([(200, True)] * 3, [(600, True)] * 3)) == "holds"
  assert judge(_steps([(200, True)] * 3, [(590, True)] * 3)) == "holds in direction only"
  # 4x on the means, but one tanh seed beats the slowest ReLU seed: direction only.
  assert judge(_steps([(100, True), (100, True), (700, True)],
                      [(650, True), (1500, True), (1450, True)])) == "holds in direction only"
  # tanh never reaches the threshold: its last step is a lower bound, enough to hold.
  assert judge(_steps(fast, [(2270, False)] * 3)) == "holds"
  assert judge(_steps(fast, [(220, True)] * 3)) == "does not hold"  # ratio 1
  assert judge(_steps(fast, [(100, True)] * 3)) == "does not hold"
  # A ReLU seed that never reaches the threshold: nothing to measure.
  assert judge(_steps([(200, True), (2270, False)], [(2270, False)] * 2)) == "does not hold"


def _rows(errors, every=20):
  return [{"step": every * (i + 1), "train_accuracy": 1 - e, "train_loss": 0.0}
          for i, e in enumerate(errors)] + [{"step": every * len(errors), "eval_top1": 0.9}]


def test_steps_to_threshold_averages_over_the_window():
  # One lucky row at step 40 does not count: the window (100 steps) is not full yet,
  # and then the mean of the last five rows must be at or under 7% (step 160: 7.2%).
  errors = [0.30, 0.05, 0.10, 0.09, 0.08, 0.07, 0.06, 0.06, 0.06, 0.06]
  assert alexnet.steps_to_threshold(_rows(errors), 0.07, 100) == (180, True)
  assert alexnet.steps_to_threshold(_rows(errors), 0.01, 100) == (200, False)
  assert alexnet.steps_to_threshold(_rows([0.05] * 10), 0.07, 100) == (100, True)
  # Rows of unequal length (an epoch's end) weigh by the steps they cover.
  rows = [{"step": 90, "train_accuracy": 0.9}, {"step": 100, "train_accuracy": 0.0}]
  assert alexnet.steps_to_threshold(rows, 0.2, 100) == (100, True)  # 0.9 x 0.1 + 0.1 x 1.0 = 0.19
  with pytest.raises(ValueError, match="no training rows"):
    alexnet.steps_to_threshold([{"step": 5, "eval_top1": 0.5}], 0.1, 1)


def test_relu_sweeps_cover_both_activations_rates_and_seeds():
  (cpu,) = alexnet.AlexNetReLU().sweeps("cpu")
  names = {r["name"] for r in cpu.runs}
  assert len(names) == 18 and "tanh_lr0.1_seed2" in names and "relu_lr0.01_seed0" in names
  assert dict(cpu.fixed)["model_kwargs.output_activation"] == "None"
  (full,) = alexnet.AlexNetReLU().sweeps("full")
  run = full.runs[0]  # both lenet5_modern activations switch together
  assert run["model_kwargs.modern_conv_activation"] == run["model_kwargs.modern_fc_activation"]


USPS = "npz:/x/usps/usps.npz"
FASHION = "npz:/x/fashion_mnist/fashion_mnist.npz"


def _write_run(sweep_dir, name, model, dataset, metrics, accuracy, finished=True):
  """A train.py workdir: ``metrics`` as metrics.jsonl, a summary (finished unless told)."""
  workdir = os.path.join(sweep_dir, name)
  os.makedirs(workdir)
  with open(os.path.join(workdir, "metrics.jsonl"), "w") as f:
    f.write("".join(json.dumps(r) + "\n" for r in metrics))
  last = max(r["step"] for r in metrics)
  with open(os.path.join(workdir, "summary.json"), "w") as f:
    json.dump({"step": last if finished else last - 1, "total_steps": last,
               "eval_top1": accuracy, "num_params": 9_760, "model": model,
               "dataset": dataset, "wall_time_sec": 1.0}, f)
  return {"name": name, "workdir": workdir, "overrides": {"name": name}}


def _relu_run(sweep_dir, act, lr, seed, clean_from):
  """400 steps logged every 20: training error 50% up to step ``clean_from`` (None: all
  the way), 0% after, so the last 100 steps' error first reaches 7% at clean_from + 100.
  Test accuracy 0.5 at step 200, then ``_final(act, lr, seed)`` at the end."""
  rows = [{"step": s, "epoch": s / 100, "train_loss": 1.0, "learning_rate": lr,
           "train_accuracy": 0.5 if clean_from is None or s <= clean_from else 1.0}
          for s in range(20, 420, 20)]
  rows.insert(10, {"step": 200, "epoch": 2.0, "eval_top1": 0.5, "eval_loss": 1.0})
  rows.append({"step": 400, "epoch": 4.0, "eval_top1": _final(act, lr, seed),
               "eval_loss": 0.2})
  return _write_run(sweep_dir, f"{act}_lr{lr}_seed{seed}", "lenet1989", USPS, rows,
                    _final(act, lr, seed))


def _final(act, lr, seed):
  return 0.9 + 0.01 * seed + (0.04 if act == "relu" else 0.0) + (0.02 if lr == 0.1 else 0.0)


# (activation, lr) -> the step after which each seed's training error is 0 (None: never)
RELU_CURVES = {("relu", 0.01): (100, 140), ("relu", 0.1): (40, 60),  # 200, 240; 140, 160
               ("tanh", 0.01): (240, 280),  # 340, 380: both seeds reach 7%
               ("tanh", 0.1): (140, None)}  # 240 and never (400): faster, but one misses


def test_relu_analyze_on_hand_made_runs(tmp_path):
  sweep_dir = str(tmp_path / "activations")
  runs = [_relu_run(sweep_dir, act, lr, seed, clean[seed])
          for (act, lr), clean in RELU_CURVES.items() for seed in (0, 1)]
  with open(os.path.join(sweep_dir, "sweep.json"), "w") as f:
    json.dump({"runs": runs}, f)
  e = alexnet.AlexNetReLU()
  out = tmp_path / "out"
  result = e.analyze("cpu", {"activations": sweep_dir}, str(out))
  m = result.measurements
  # The fastest rates: ReLU's 0.1 (150 steps); tanh's 0.01 (360), since at 0.1 one seed
  # never gets there (most seeds reaching first, then fewest steps).
  assert m["best_lr"] == {"relu": 0.1, "tanh": 0.01}
  assert m["steps"] == {"relu": [(140, True), (160, True)], "tanh": [(340, True), (380, True)]}
  assert m["ratio"] == pytest.approx(360 / 150)
  assert not m["tanh_censored"] and m["threshold"] == 0.07
  assert (m["seeds"], m["dataset"], m["model"]) == (2, "usps", "lenet1989")
  assert result.verdict == "holds in direction only"  # every ReLU seed first, but 2.4x < 3x
  with open(out / "results.csv") as f:
    rows = {(r["activation"], float(r["learning_rate"])): r for r in csv.DictReader(f)}
  assert list(rows) == [("relu", 0.01), ("relu", 0.1), ("tanh", 0.01), ("tanh", 0.1)]
  expected = {("relu", 0.01): (220, 20, "2/2"), ("relu", 0.1): (150, 10, "2/2"),
              ("tanh", 0.01): (360, 20, "2/2"), ("tanh", 0.1): (320, 80, "1/2")}
  for key, (mean, half_range, reached) in expected.items():
    r = rows[key]
    assert float(r["steps_to_threshold (mean)"]) == pytest.approx(mean)
    assert float(r["std"]) == pytest.approx(half_range * 2 ** 0.5)  # two seeds
    assert r["reached"] == reached and r["seeds"] == "2"
    # The last evaluation's error, mean of the seeds (not the one at step 200).
    assert float(r["final test error %"]) == pytest.approx(
        100 * (1 - (_final(*key, 0) + _final(*key, 1)) / 2))
    assert r["fastest"] == ("yes" if key in (("relu", 0.1), ("tanh", 0.01)) else "")
  assert result.ours == ("2.4x fewer steps to 7% training error (ReLU 150 at lr 0.1, tanh "
                         "360 at lr 0.01; 2 seeds, usps, lenet1989)")
  assert (out / "training_error.png").stat().st_size > 10_000
  assert result.files == ["results.md", "results.csv", "training_error.png"]


def test_relu_analyze_bounds_a_tanh_that_never_gets_there(tmp_path):
  sweep_dir = str(tmp_path / "activations")
  runs = [_relu_run(sweep_dir, "relu", 0.1, seed, 0) for seed in (0, 1)]  # 100 steps
  runs += [_relu_run(sweep_dir, "tanh", 0.1, seed, None) for seed in (0, 1)]  # never: 400
  with open(os.path.join(sweep_dir, "sweep.json"), "w") as f:
    json.dump({"runs": runs}, f)
  result = alexnet.AlexNetReLU().analyze("cpu", {"activations": sweep_dir},
                                         str(tmp_path / "out"))
  assert result.measurements["steps"]["tanh"] == [(400, False), (400, False)]
  assert result.measurements["tanh_censored"] and result.verdict == "holds"  # >= 4x
  assert result.ours.startswith(">=4.0x fewer steps to 7% training error (ReLU 100 at lr")


# ---------------------------------------------------------------- alexnet_dropout_lrn


def _nets(gap, test_error):
  return {"gap": {"paper": gap[0], "no_dropout": gap[1], "no_lrn": (0.0, 0.0)},
          "test_error": {"paper": test_error[0], "no_dropout": (0.0, 0.0),
                         "no_lrn": test_error[1]}}


def test_dropout_rule():
  judge = alexnet.DropoutLRN.judge_dropout
  lrn = ((20.0, 0.3), (21.0, 0.3))
  assert judge(_nets(((10.0, 1.0), (16.0, 1.0)), lrn)) == "holds"
  assert judge(_nets(((14.5, 1.0), (16.0, 1.0)), lrn)) == "holds in direction only"  # < 2 stds
  # Without dropout the net hardly overfits (gap < 5 points): not "substantial".
  assert judge(_nets(((1.0, 0.1), (4.0, 0.1)), lrn)) == "holds in direction only"
  assert judge(_nets(((16.0, 1.0), (16.0, 1.0)), lrn)) == "does not hold"
  assert judge(_nets(((17.0, 1.0), (16.0, 1.0)), lrn)) == "does not hold"


def test_lrn_rule():
  judge = alexnet.DropoutLRN.judge_lrn
  gap = ((10.0, 1.0), (16.0, 1.0))
  assert judge(_nets(gap, ((20.0, 0.2), (21.0, 0.2)))) == "holds"
  assert judge(_nets(gap, ((20.0, 0.2), (20.75, 0.2)))) == "holds"  # just over half of 1.4
  assert judge(_nets(gap, ((20.0, 0.1), (20.6, 0.1)))) == "holds in direction only"  # < 0.7
  assert judge(_nets(gap, ((20.0, 0.6), (21.0, 0.6)))) == "holds in direction only"  # noise
  assert judge(_nets(gap, ((20.0, 0.2), (20.0, 0.2)))) == "does not hold"
  assert judge(_nets(gap, ((21.0, 0.2), (20.0, 0.2)))) == "does not hold"


def test_the_entry_verdict_is_the_weaker_of_the_two():
  judge = alexnet.DropoutLRN().judge
  holds_gap, weak_gap, no_gap = ((10.0, 1.0), (16.0, 1.0)), ((15.0, 1.0), (16.0, 1.0)), \
      ((17.0, 1.0), (16.0, 1.0))
  holds_lrn, weak_lrn, no_lrn = ((20.0, 0.2), (21.0, 0.2)), ((20.0, 0.1), (20.3, 0.1)), \
      ((21.0, 0.2), (20.0, 0.2))
  assert judge(_nets(holds_gap, holds_lrn)) == "holds"
  assert judge(_nets(holds_gap, weak_lrn)) == "holds in direction only"
  assert judge(_nets(weak_gap, holds_lrn)) == "holds in direction only"
  assert judge(_nets(holds_gap, no_lrn)) == "does not hold"
  assert judge(_nets(no_gap, holds_lrn)) == "does not hold"


# net -> (test accuracy %, training accuracy % in eval mode) of seeds 0 and 1
DROPOUT_LRN = {"paper": ((80.0, 82.0), (90.0, 91.0)),  # gaps 10, 9; errors 20, 18
               "no_dropout": ((78.0, 79.0), (99.0, 99.0)),  # gaps 21, 20
               "no_lrn": ((79.0, 80.0), (88.0, 89.0))}  # errors 21, 20


def _dropout_lrn_sweep(tmp_path, monkeypatch, unfinished=()):
  """Hand-made finished runs of the three nets; ``train_accuracy`` (which would load each
  run's checkpoint) answers DROPOUT_LRN's training accuracy of the run."""
  sweep_dir = str(tmp_path / "nets")
  runs, train = [], {}
  for net, (tests, trains) in DROPOUT_LRN.items():
    for seed in (0, 1):
      rows = [{"step": 10, "epoch": 1, "train_loss": 2.0, "train_accuracy": 0.3,
               "learning_rate": 0.01},
              {"step": 20, "epoch": 2, "eval_top1": tests[seed] / 100, "eval_loss": 0.6}]
      name = f"{net}_seed{seed}"
      runs.append(_write_run(sweep_dir, name, "alexnet", FASHION, rows, tests[seed] / 100,
                             finished=name not in unfinished))
      train[runs[-1]["workdir"]] = trains[seed] / 100
  with open(os.path.join(sweep_dir, "sweep.json"), "w") as f:
    json.dump({"runs": runs}, f)
  monkeypatch.setattr(alexnet, "train_accuracy", lambda workdir: train[workdir])
  return sweep_dir


def test_dropout_lrn_analyze_on_hand_made_runs(tmp_path, monkeypatch):
  e = alexnet.DropoutLRN()
  out = tmp_path / "out"
  result = e.analyze("cpu", {"nets": _dropout_lrn_sweep(tmp_path, monkeypatch)}, str(out))
  m = result.measurements
  sd = 2 ** 0.5 / 2  # the sample std of two values one point apart
  assert m["gap"]["paper"] == pytest.approx((9.5, sd))
  assert m["gap"]["no_dropout"] == pytest.approx((20.5, sd))
  assert m["test_error"]["paper"] == pytest.approx((19.0, 2 * sd))
  assert m["test_error"]["no_lrn"] == pytest.approx((20.5, sd))
  assert m["train_accuracy"]["no_dropout"] == pytest.approx((99.0, 0.0))
  # Dropout: 20.5 >= 5 and 11 > 0.71 + 0.71. LRN: 1.5 >= 0.7 but not > 1.41 + 0.71.
  assert m["verdicts"] == {"dropout": "holds", "lrn": "holds in direction only"}
  assert result.verdict == "holds in direction only"
  assert (m["seeds"], m["dataset"]) == (2, "fashion_mnist")
  with open(out / "results.csv") as f:
    rows = {r["net"]: r for r in csv.DictReader(f)}
  assert list(rows) == ["paper", "no_dropout", "no_lrn"]
  for net, (tests, trains) in DROPOUT_LRN.items():
    r = rows[net]
    assert r["seeds"] == "2"
    assert float(r["test acc %"]) == pytest.approx(sum(tests) / 2)
    assert float(r["train acc % (eval mode)"]) == pytest.approx(sum(trains) / 2)
    assert float(r["gap (points)"]) == pytest.approx((sum(trains) - sum(tests)) / 2)
    assert float(r["test error %"]) == pytest.approx(100 - sum(tests) / 2)
  assert result.ours == (
      "gap 20.5 +- 0.7 points without dropout, 9.5 +- 0.7 with (holds); LRN changes test "
      "error by -1.50 points (holds in direction only) (2 seeds, fashion_mnist, 1,000 "
      "train images, AlexNet 1/8 width)")
  assert (out / "dropout_lrn.png").stat().st_size > 10_000
  assert result.files == ["results.md", "results.csv", "dropout_lrn.png"]


def test_dropout_lrn_analyze_needs_every_run_finished(tmp_path, monkeypatch):
  sweep_dir = _dropout_lrn_sweep(tmp_path, monkeypatch, unfinished={"no_lrn_seed1"})
  with pytest.raises(RuntimeError, match=r"runs not finished in .*no_lrn_seed1"):
    alexnet.DropoutLRN().analyze("cpu", {"nets": sweep_dir}, str(tmp_path / "out"))
