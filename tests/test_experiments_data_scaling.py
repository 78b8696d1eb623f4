"""experiments/data_scaling.py (claim 10, ViT and data): the verdict rule on synthetic
measurements, the sweeps' equal compute, and the analysis of hand-made run directories."""

import csv
import json
import os
import statistics

import pytest

from experiments import data_scaling as ds


def _m(vit, resnet, convnext, sizes=(1000, 20000)):
  """Measurements with accuracies (%) at the smallest and the largest subset."""
  return {"accuracy": {ds.VIT: dict(zip(sizes, vit)), ds.RESNET: dict(zip(sizes, resnet)),
                       ds.CONVNEXT: dict(zip(sizes, convnext))}}


def test_rule():
  judge = ds.ViTData().judge
  # Lead 6 at 1k, 1 at 20k: shrinks by 5 >= max(1, 1.5).
  assert judge(_m((70, 85), (76, 86), (76, 86))) == "holds"
  # ViT overtakes at the largest subset: still holds.
  assert judge(_m((70, 88), (74, 86), (75, 87))) == "holds"
  # Lead 4 -> 3: shrinks by exactly 1 = max(1, 4 / 4), the boundary holds.
  assert judge(_m((70, 80), (74, 83), (74, 83))) == "holds"
  # Lead 4 -> 3.01: shrinks by 0.99 < 1.
  assert judge(_m((70, 80), (74, 83.01), (74, 83.01))) == "holds in direction only"
  # Lead 10 -> 8: shrinks by 2, less than a quarter of 10.
  assert judge(_m((60, 80), (70, 88), (70, 88))) == "holds in direction only"
  # The lead grows with data.
  assert judge(_m((70, 80), (72, 85), (72, 85))) == "does not hold"
  # One CNN below ViT at the smallest subset, however the lead moves.
  assert judge(_m((70, 80), (80, 81), (69.9, 80))) == "does not hold"
  # Three sizes: only the smallest and the largest count.
  three = _m((70, 50, 85), (76, 90, 86), (76, 90, 86), sizes=(1000, 5000, 20000))
  assert judge(three) == "holds"


@pytest.mark.parametrize("budget", ["tiny", "cpu", "full"])
def test_every_run_sees_the_same_images_with_one_recipe(budget):
  s = ds.BUDGET_SETTINGS[budget]
  (sweep,) = ds.ViTData().sweeps(budget)
  assert len(sweep.runs) == len(s["models"]) * len(s["sizes"]) * len(s["seeds"])
  per_run = {"model", "num_train_examples", "num_epochs", "seed", "warmup_epochs",
             "eval_every_epochs", "checkpoint_every_epochs", "name"}
  for run in sweep.runs:
    # Only the model, the subset and what follows from its size differ between runs.
    assert {k for k in run if not k.startswith("model_kwargs.")} == per_run
    n, epochs = int(run["num_train_examples"]), int(run["num_epochs"])
    assert n * epochs == s["images"] and n % s["batch"] == 0
    assert float(run["warmup_epochs"]) == pytest.approx(ds.WARMUP * epochs)
  assert {r["model"] for r in sweep.runs} == {"vit_b16", "resnet20", "convnext_t"}
  assert dict(sweep.fixed)["batch_size"] == str(s["batch"])
  assert set(ds.RECIPE) <= set(sweep.fixed)
  assert len({r["name"] for r in sweep.runs}) == len(sweep.runs)
  # Seed after seed (each program compiles at its first seed); 3 seeds at cpu and full.
  seeds = [int(r["seed"]) for r in sweep.runs]
  assert seeds == sorted(seeds) and (len(set(seeds)) >= 3) == (budget != "tiny")
  assert sweep.parallel == (2 if budget == "cpu" else 1)


def test_cpu_models_cost_about_the_same():
  import analysis  # pylint: disable=g-import-not-at-top
  import models  # pylint: disable=g-import-not-at-top
  macs = {}
  for label, fields in ds.BUDGET_SETTINGS["cpu"]["models"].items():
    kwargs = {k: eval(v) if isinstance(v, str) else v  # "(32,64,128)" -> a tuple
              for k, v in fields.items() if k != "model"}
    model = models.create_model(fields["model"], num_classes=10, **kwargs)
    macs[label] = analysis.count_macs(model, (1, 28, 28, 1))
  assert max(macs.values()) < 2.5 * min(macs.values()), macs
  assert 1e6 < min(macs.values()) and max(macs.values()) < 3e6


def test_a_subset_that_is_not_whole_epochs_is_an_error():
  s = dict(ds.BUDGET_SETTINGS["cpu"], images=25000)
  with pytest.raises(ValueError, match="whole epochs of 20000"):
    ds._run(ds.VIT, s["models"][ds.VIT], 20000, 0, s)


FASHION = "npz:/x/fashion_mnist/fashion_mnist.npz"
MODELS = {ds.VIT: "vit_b16", ds.RESNET: "resnet20", ds.CONVNEXT: "convnext_t"}
SIZES = ds.BUDGET_SETTINGS["cpu"]["sizes"]  # 1,000 to 20,000
# Seed 0's test accuracy (%) and final training accuracy minus it, per model and size;
# seed 1 is one point better on both.
TEST = {ds.VIT: (60, 66, 74, 84), ds.RESNET: (72, 76, 80, 85), ds.CONVNEXT: (70, 74, 79, 85)}
OVERFIT = {ds.VIT: (35, 25, 15, 5), ds.RESNET: (20, 15, 8, 2), ds.CONVNEXT: (20, 15, 8, 2)}
PARAMS = {"vit_b16": 139_000, "resnet20": 17_000, "convnext_t": 367_000}
MACS = {"vit_b16": 2_400_000, "resnet20": 2_000_000, "convnext_t": 1_200_000}


def _fake_run(sweep_dir, label, n, seed, test, train, finished=True):
  """A train.py workdir of ``label`` on ``n`` images: final test and training accuracy (%)."""
  model = MODELS[label]
  name = f"{label.lower().replace('-', '')}_n{n}_seed{seed}"
  workdir = os.path.join(sweep_dir, name)
  os.makedirs(workdir)
  with open(os.path.join(workdir, "config.json"), "w") as f:
    json.dump({"model": model, "dataset": FASHION, "num_train_examples": n}, f)
  rows = [{"step": 100, "epoch": 1, "train_loss": 2.0, "train_accuracy": 0.1,
           "learning_rate": 0.002},
          {"step": 100, "epoch": 1, "eval_top1": 0.1, "eval_loss": 2.0},
          {"step": 200, "epoch": 2, "train_loss": 0.5, "train_accuracy": train / 100,
           "learning_rate": 0.0},  # the last training log: what analyze reads
          {"step": 200, "epoch": 2, "eval_top1": test / 100, "eval_loss": 0.5}]
  with open(os.path.join(workdir, "metrics.jsonl"), "w") as f:
    f.write("".join(json.dumps(r) + "\n" for r in rows))
  with open(os.path.join(workdir, "summary.json"), "w") as f:
    json.dump({"step": 200 if finished else 100, "total_steps": 200,
               "eval_top1": test / 100, "num_params": PARAMS[model], "model": model,
               "dataset": FASHION, "image_shape": [28, 28, 1], "num_classes": 10,
               "wall_time_sec": 1.0}, f)
  return {"name": name, "workdir": workdir,
          "overrides": {"model": model, "num_train_examples": str(n), "seed": str(seed),
                        "name": name}}


def _fake_sweep(tmp_path, monkeypatch, skip=()):
  sweep_dir = str(tmp_path / "sizes")
  runs = [_fake_run(sweep_dir, label, n, seed, TEST[label][i] + seed,
                    TEST[label][i] + OVERFIT[label][i] + seed)
          for label in MODELS for i, n in enumerate(SIZES) for seed in (0, 1)
          if (label, n) not in skip]
  # A third ViT seed at 1,000 images that stopped early: not counted.
  runs.append(_fake_run(sweep_dir, ds.VIT, 1000, 2, 99, 99, finished=False))
  with open(os.path.join(sweep_dir, "sweep.json"), "w") as f:
    json.dump({"runs": runs}, f)
  from launch import collect  # pylint: disable=g-import-not-at-top
  monkeypatch.setattr(collect, "count_macs",
                      lambda config, shape, k, cache: MACS[config["model"]])
  return sweep_dir


def test_analyze_on_hand_made_runs(tmp_path, monkeypatch):
  e = ds.ViTData()
  out = tmp_path / "out"
  result = e.analyze("cpu", {"sizes": _fake_sweep(tmp_path, monkeypatch)}, str(out))
  m = result.measurements
  # Means over seeds 0 and 1: seed 0's accuracy + 0.5.
  assert m["accuracy"][ds.VIT] == pytest.approx({1000: 60.5, 2000: 66.5, 5000: 74.5,
                                                 20000: 84.5})
  assert m["accuracy"][ds.CONVNEXT][5000] == pytest.approx(79.5)
  # (72.5 + 70.5) / 2 - 60.5 = 11 at 1,000; 85.5 - 84.5 = 1 at 20,000.
  assert m["cnn_lead"] == pytest.approx({1000: 11.0, 2000: 9.0, 5000: 5.5, 20000: 1.0})
  assert result.verdict == "holds"  # shrinks by 10 >= max(1, 11 / 4)
  assert (m["seeds"], m["dataset"]) == (2, "fashion_mnist")
  assert m["models"][ds.VIT] == {"params": 139_000, "macs": 2_400_000}
  with open(out / "results.csv") as f:
    rows = list(csv.DictReader(f))
  assert [(r["model"], int(r["train images"]), int(r["epochs"])) for r in rows] == [
      (label, n, 20000 // n) for label in MODELS for n in SIZES]
  for r in rows:
    i = SIZES.index(int(r["train images"]))
    test = TEST[r["model"]][i] + 0.5
    assert float(r["test acc %"]) == pytest.approx(test)
    assert float(r["std"]) == pytest.approx(statistics.stdev([0, 1]))
    assert float(r["train acc % (last log)"]) == pytest.approx(test + OVERFIT[r["model"]][i])
    assert float(r["train - test"]) == pytest.approx(OVERFIT[r["model"]][i])
    model = MODELS[r["model"]]
    assert (int(r["params"]), int(r["MACs"]), r["seeds"]) == (PARAMS[model], MACS[model], "2")
    if r["model"] == ds.VIT:
      assert float(r["CNNs' lead over ViT"]) == pytest.approx(m["cnn_lead"][SIZES[i]])
    else:
      assert r["CNNs' lead over ViT"] == ""
  assert result.ours == (
      "CNNs' lead over ViT +11.0 points at 1,000 images, +1.0 at 20,000 (2 seeds, "
      "fashion_mnist, ViT/ResNet-20/ConvNeXt at 1.2-2.4M MACs, the same images seen per "
      "run)")
  assert (out / "accuracy_vs_data.png").stat().st_size > 10_000
  assert result.files == ["results.md", "results.csv", "accuracy_vs_data.png"]


def test_analyze_needs_every_model_at_every_size(tmp_path, monkeypatch):
  sweep_dir = _fake_sweep(tmp_path, monkeypatch, skip={(ds.CONVNEXT, 5000)})
  with pytest.raises(RuntimeError, match="no finished run of ConvNeXt n=5000"):
    ds.ViTData().analyze("cpu", {"sizes": sweep_dir}, str(tmp_path / "out"))
