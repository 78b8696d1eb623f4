"""Claims 2 and 3, Krizhevsky, Sutskever & Hinton (2012), "ImageNet Classification with
Deep Convolutional Neural Networks": ReLUs train faster than tanh (Sec. 3.1, Fig. 1), and
dropout and local response normalisation help (Sec. 4.2, Sec. 3.3).

``alexnet_relu`` (Fig. 1: "A four-layer convolutional neural network with ReLUs (solid
line) reaches a 25% training error rate on CIFAR-10 six times faster than an equivalent
network with tanh neurons"; "the learning rates for each network were chosen
independently to make training as fast as possible. No regularization of any kind was
employed.") Choices, fixed before any cpu-budget run:

* Network: LeNet-1989 (``lenet1989``: two convolutions, two fully connected layers, the
  four layers of the paper's figure), on USPS, its own data (16x16, 7,291 training and
  2,007 test digits), with softmax cross-entropy (logits out: ``output_activation=None``),
  SGD with momentum 0.9, batch 32, constant rate, no weight decay and no augmentation.
  Only ``activation`` differs between the two nets; the init (uniform +-2.4/sqrt(fan-in))
  and the -1 padding are the same for both. (``lenet5_modern`` is the larger four-layer
  net, but at about 2,000 images/s on this CPU its tanh runs alone would take the whole
  budget; ``full`` uses it, on CIFAR-10.)
* Threshold. 25% was not an easy target on CIFAR-10: the Fig. 1 network is read as
  cuda-convnet's four-layer CIFAR-10 net, named "18pct" after its test error, so 25% is
  25/18 = 1.4 times the error the network ends at. On USPS, LeNet-1989 ends at 5.0%
  test error (the 1989 paper; REFERENCE.md), and 1.4 x 5.0% gives a **7% training
  error**. (On CIFAR-10, ``full``, the threshold is the paper's 25%.)
* Training error: the error on the training batches as they are trained on (what
  Fig. 1 plots), over the last 100 steps (5 log rows of 20 steps, 3,200 images: a
  binomial std of 0.45 points at 7%); the step at which that first falls to the
  threshold. A run that never gets there counts as its last step (a lower bound).
* Learning rates: for each activation the fastest of 0.01, 0.03 and 0.1 (momentum 0.9),
  by the mean over the seeds of the steps to the threshold, as the paper chose each
  net's rate to train fastest; 3 seeds each, 18 runs of 10 epochs (2,270 steps). The
  same seeds choose the rate and measure it, for both activations alike.

``alexnet_dropout_lrn`` (Sec. 4.2: "Without dropout, our network exhibits substantial
overfitting"; Sec. 3.3: "Response normalization reduces our top-1 and top-5 error rates
by 1.4% and 1.2%"): the paper's network (``alexnet``, two towers, LRN, dropout 0.5 on the
inputs of fc7 and fc8) at 1/8 width on 1,000 Fashion-MNIST training images (100 per
class) upsampled to 63x63, 30 epochs without augmentation, the full test split;
``configs/alexnet.py:fashion_mnist`` says why its init and rate differ from the paper's,
and why the input is scaled to the paper's pixel range (LRN's constants act on it). Three
nets, 3 seeds each: the paper's; without dropout; without LRN (9 runs, each tested once,
at the end).

* The net without LRN takes the standardised input (``input_scale=1``) at the cpu budget.
  Without LRN the ReLU network is positively homogeneous in its input (up to its
  biases), so the paper's pixel range only multiplies every activation by 90: with
  PyTorch's init the first cpu run of this entry diverged that way (seed 0 a NaN loss at
  step 62, seeds 1 and 2 at 26% and 10% test accuracy after 30 epochs), while the
  paper's N(0, 0.01) init (the full budget) keeps the activations small. The change was
  made after that run, to the setup, not to the rule.

* Training accuracy is measured after training on the 1,000 training images with the
  final weights in evaluation mode (dropout off), so that both nets are measured alike;
  the running accuracy of the training batches would count dropout's noise as a smaller
  gap. The gap is training minus test accuracy, in points.
* The two rules (in ``DropoutLRN.rule``) are judged separately and the entry's verdict is
  the weaker of the two: it holds only if both hold, and does not hold if either does not.
"""

from __future__ import annotations

import json
import os
import statistics
from typing import Any, Sequence

from experiments import entry

ACTIVATIONS = ("relu", "tanh")
VERDICT_ORDER = ("does not hold", "holds in direction only", "holds")  # weakest first


def _seed(name: str) -> int:
  return int(name.rsplit("seed", 1)[1])


def _finished(rows: list[dict[str, Any]], sweep_dir: str, entry_id: str) -> list[dict]:
  done = [r for r in rows if r["status"] == "finished"]
  if len(done) != len(rows) or not rows:
    bad = [r["name"] for r in rows if r["status"] != "finished"]
    raise RuntimeError(f"{entry_id}: runs not finished in {sweep_dir}: {bad or 'none ran'}")
  return done


# ----------------------------------------------------------------- claim 2: ReLU vs tanh

# Training-error threshold and the window (steps) it is averaged over, per budget.
THRESHOLD = {"tiny": 0.5, "cpu": 0.07, "full": 0.25}
WINDOW = {"tiny": 4, "cpu": 100, "full": 195}  # full: half an epoch of CIFAR-10 at 128
LEARNING_RATES = {"tiny": (0.01, 0.03), "cpu": (0.01, 0.03, 0.1), "full": (0.01, 0.03, 0.1)}
SEEDS = {"tiny": 1, "cpu": 3, "full": 3}
PAPER_RATIO = 6.0


def steps_to_threshold(rows: Sequence[dict[str, Any]], threshold: float,
                       window: int) -> tuple[int, bool]:
  """``(step, reached)``: the first logged step at which the training error of the steps
  in the last ``window`` (the rows' errors weighted by the steps each covers; only once
  ``window`` steps have run) is at most ``threshold``; the last step and False if never."""
  train = [r for r in rows if "train_accuracy" in r]
  if not train:
    raise ValueError("no training rows")
  spans, prev = [], 0
  for r in train:
    spans.append((prev, r["step"], 1.0 - r["train_accuracy"]))
    prev = r["step"]
  for i, (_, end, _) in enumerate(spans):
    if end < window:
      continue
    start = end - window
    covered = [(max(a, start), b, e) for a, b, e in spans[:i + 1] if b > start]
    err = sum((b - a) * e for a, b, e in covered) / sum(b - a for a, b, _ in covered)
    if err <= threshold:
      return end, True
  return train[-1]["step"], False


class AlexNetReLU(entry.Entry):
  id = "alexnet_relu"
  title = "ReLU trains faster than tanh (Krizhevsky et al. 2012)"
  claim = ("a four-layer CNN with ReLUs reaches a 25% training error on CIFAR-10 about "
           "6x faster than the same network with tanh units")
  source = "Krizhevsky et al. 2012, Sec. 3.1, Fig. 1"
  paper = "6x fewer epochs to 25% training error (CIFAR-10, four-layer CNN)"
  metric = ("steps to a training error of 7% on USPS (1.4 x LeNet-1989's final 5.0% test "
            "error, as 25% is 1.4 x the Fig. 1 net's 18% on CIFAR-10), the error over the "
            "last 100 steps' batches; mean over 3 seeds at each activation's fastest rate "
            "of 0.01/0.03/0.1; the ratio tanh / ReLU (a lower bound when tanh never gets "
            "there)")
  rule = ("holds: ratio >= 3 (half the paper's 6x or more) and every ReLU seed reaches the "
          "threshold before any tanh seed does; holds in direction only: ratio > 1; does "
          "not hold: ratio <= 1, or a ReLU seed never reaches the threshold at ReLU's "
          "fastest rate")

  def sweeps(self, budget: str):
    if budget == "full":  # the paper's data: lenet5_modern on CIFAR-10 at 28x28
      config = "configs/lenet5.py:modern"
      fixed = (("dataset", "cifar10"), ("image_size", "28"), ("augment.crop_padding", "0"),
               ("optimizer", "sgd"), ("momentum", "0.9"), ("weight_decay", "0.0"),
               ("schedule", "constant"), ("batch_size", "128"), ("num_epochs", "60"),
               ("log_every_steps", "39"), ("eval_every_epochs", "10"),
               ("checkpoint_every_epochs", "10"))
      act = ("model_kwargs.modern_conv_activation", "model_kwargs.modern_fc_activation")
    else:
      config = "configs/lenet1989.py:usps" if budget == "cpu" else "configs/lenet1989.py:tiny"
      fixed = (("model_kwargs.output_activation", "None"),
               ("model_kwargs.out_bias_init", "0.0"), ("loss", "cross_entropy"),
               ("momentum", "0.9"), ("batch_size", "32"))
      if budget == "cpu":
        fixed += (("num_epochs", "10"), ("log_every_steps", "20"),
                  ("eval_every_epochs", "10"), ("checkpoint_every_epochs", "10"))
      else:
        fixed += (("num_epochs", "2"), ("log_every_steps", "2"))
      act = ("model_kwargs.activation",)
    runs = tuple({**{k: a for k in act}, "learning_rate": str(lr), "seed": str(seed),
                  "name": f"{a}_lr{lr}_seed{seed}"}
                 for a in ACTIVATIONS for lr in LEARNING_RATES[budget]
                 for seed in range(SEEDS[budget]))
    return (entry.Sweep("activations", config, runs=runs, fixed=fixed),)

  def judge(self, m: dict[str, Any]) -> str:
    relu, tanh = m["steps"]["relu"], m["steps"]["tanh"]  # [(step, reached)] per seed
    if not all(reached for _, reached in relu):
      return "does not hold"
    ratio = statistics.fmean(s for s, _ in tanh) / statistics.fmean(s for s, _ in relu)
    if ratio >= PAPER_RATIO / 2 and max(s for s, _ in relu) < min(s for s, _ in tanh):
      return "holds"
    return "holds in direction only" if ratio > 1 else "does not hold"

  def analyze(self, budget: str, sweep_dirs: dict[str, str], out_dir: str) -> entry.Result:
    from launch import collect  # pylint: disable=g-import-not-at-top
    from training import rundir  # pylint: disable=g-import-not-at-top
    sweep_dir = sweep_dirs["activations"]
    rows = _finished(collect.collect(sweep_dir, quiet=True), sweep_dir, self.id)
    threshold, window = THRESHOLD[budget], WINDOW[budget]
    # {activation: {lr: [(step, reached, seed, metrics rows)]}}
    per: dict[str, dict[float, list]] = {a: {} for a in ACTIVATIONS}
    for r in rows:
      act, lr_part, _ = r["name"].split("_")
      metrics = rundir.read_metrics(r["workdir"])
      step, reached = steps_to_threshold(metrics, threshold, window)
      per[act].setdefault(float(lr_part.removeprefix("lr")), []).append(
          (step, reached, _seed(r["name"]), metrics))
    table, best = [], {}
    for act in ACTIVATIONS:
      if not per[act]:
        raise RuntimeError(f"{self.id}: no {act} run in {sweep_dir}")
      for lr, runs in sorted(per[act].items()):
        mean, std = entry.mean_std([s for s, *_ in runs])
        table.append({"activation": act, "learning_rate": lr, "seeds": len(runs),
                      "steps_to_threshold (mean)": mean, "std": std,
                      "reached": f"{sum(x for _, x, *_ in runs)}/{len(runs)}",
                      "final test error %": statistics.fmean(
                          100 * (1 - [e for e in m if "eval_top1" in e][-1]["eval_top1"])
                          for *_, m in runs)})
      # The fastest rate: most seeds reaching the threshold, then fewest mean steps.
      best[act] = min(per[act], key=lambda lr: (-sum(x for _, x, *_ in per[act][lr]),
                                                statistics.fmean(s for s, *_ in per[act][lr])))
    for row in table:
      row["fastest"] = "yes" if best[row["activation"]] == row["learning_rate"] else ""
    steps = {a: [(s, x) for s, x, *_ in sorted(per[a][best[a]], key=lambda t: t[2])]
             for a in ACTIVATIONS}
    ratio = statistics.fmean(s for s, _ in steps["tanh"]) / statistics.fmean(
        s for s, _ in steps["relu"])
    dataset = entry.dataset_name(rows[0]["dataset"])
    m = {"steps": steps, "best_lr": best, "ratio": ratio, "threshold": threshold,
         "tanh_censored": not all(x for _, x in steps["tanh"]),
         "seeds": min(len(v) for a in ACTIVATIONS for v in per[a].values()),
         "dataset": dataset, "model": rows[0]["model"]}
    verdict = self.judge(m)
    files = entry.write_table(out_dir, table, list(table[0]), self.title)
    files.append(_plot_curves(
        {a: [t[3] for t in per[a][best[a]]] for a in ACTIVATIONS}, best, threshold,
        window, os.path.join(out_dir, "training_error.png")))
    bound = ">=" if m["tanh_censored"] else ""
    ours = (f"{bound}{ratio:.1f}x fewer steps to {100 * threshold:g}% training error "
            f"(ReLU {statistics.fmean(s for s, _ in steps['relu']):.0f} at lr {best['relu']:g}"
            f", tanh {statistics.fmean(s for s, _ in steps['tanh']):.0f} at lr "
            f"{best['tanh']:g}; {m['seeds']} seeds, {dataset}, {m['model']})")
    return entry.Result(m, verdict, ours, files)


def _smoothed(rows: Sequence[dict[str, Any]], window: int) -> tuple[list[int], list[float]]:
  """Training error over the last ``window`` steps at each logged step (from ``window``)."""
  steps, errors = [], []
  train = [r for r in rows if "train_accuracy" in r]
  for r in train:
    if r["step"] >= window:
      last = [t for t in train if r["step"] - window < t["step"] <= r["step"]]
      steps.append(r["step"])
      errors.append(100 * statistics.fmean(1 - t["train_accuracy"] for t in last))
  return steps, errors


def _plot_curves(curves: dict[str, list], best: dict[str, float], threshold: float,
                 window: int, path: str) -> str:
  fig, ax = entry.figure(figsize=(6, 4))
  for act, style in (("relu", "-"), ("tanh", "--")):
    for i, rows in enumerate(curves[act]):
      steps, errors = _smoothed(rows, window)
      ax.plot(steps, errors, style, color="C0" if act == "relu" else "C3", alpha=0.8,
              label=f"{act} (lr {best[act]:g})" if i == 0 else None)
  ax.axhline(100 * threshold, color="k", lw=1, ls=":", label="threshold")
  ax.set(xlabel="training steps", ylabel="training error (%)", yscale="log",
         title="ReLU against tanh (after Krizhevsky et al. Fig. 1)")
  ax.legend()
  ax.grid(alpha=0.3, which="both")
  return entry.save(fig, path)


# --------------------------------------------------------- claim 3: dropout and LRN

NETS = {  # name: the paper's network less one thing
    "paper": {"model_kwargs.dropout_rate": "0.5", "model_kwargs.lrn": "True"},
    "no_dropout": {"model_kwargs.dropout_rate": "0.0", "model_kwargs.lrn": "True"},
    "no_lrn": {"model_kwargs.dropout_rate": "0.5", "model_kwargs.lrn": "False"},
}
PAPER_LRN_POINTS = 1.4  # top-1 error, Sec. 3.3
MIN_OVERFIT_POINTS = 5.0  # "substantial overfitting": a gap of at least this without dropout


def weaker(*verdicts: str) -> str:
  return min(verdicts, key=VERDICT_ORDER.index)


_DATA: dict[str, Any] = {}


def train_accuracy(workdir: str, batch: int = 500) -> float:
  """Top-1 of a run's final weights on its own training images, evaluation mode."""
  import jax  # pylint: disable=g-import-not-at-top
  import ml_collections  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  import input_pipeline  # pylint: disable=g-import-not-at-top
  import models  # pylint: disable=g-import-not-at-top
  from training import data, pretrained  # pylint: disable=g-import-not-at-top
  variables, config = pretrained.load_trained(workdir)
  config = ml_collections.ConfigDict(config)
  key = json.dumps([config.dataset, config.image_size, config.pad,
                    config.num_train_examples, config.get("background_class"),
                    config.synthetic.to_dict()], default=str)
  if key not in _DATA:  # the runs of a sweep share their data: load and resize it once
    _DATA.clear()
    _DATA[key] = data.load_in_memory(config)
  ds = _DATA[key]
  mean, std = data.normalization_stats(config, ds)
  model = models.create_model(config.model, num_classes=ds.num_classes,
                              **config.model_kwargs.to_dict())
  predict = jax.jit(lambda v, x: model.apply(v, input_pipeline.normalize(x, mean, std),
                                             train=False).argmax(-1))
  correct = 0
  for i in range(0, len(ds.train_labels), batch):
    correct += int(np.sum(np.asarray(predict(variables, ds.train_images[i:i + batch]))
                          == ds.train_labels[i:i + batch]))
  return correct / len(ds.train_labels)


class DropoutLRN(entry.Entry):
  id = "alexnet_dropout_lrn"
  title = "Dropout against overfitting, LRN against error (Krizhevsky et al. 2012)"
  claim = ("without dropout AlexNet overfits substantially and dropout narrows the "
           "train-test gap; local response normalisation lowers top-1 error by 1.4 points")
  source = "Krizhevsky et al. 2012, Sec. 4.2 and Sec. 3.3"
  paper = ("'substantial overfitting' without dropout (no figure); LRN: top-1 error -1.4 "
           "points on ImageNet, 13% -> 11% on CIFAR-10")
  metric = ("gap = training accuracy (final weights, evaluation mode, on the training "
            "images) minus test accuracy, in points, with and without dropout; test error "
            "without LRN minus with LRN; mean and std over 3 seeds, AlexNet at 1/8 width on "
            "1,000 Fashion-MNIST images at 63x63")
  rule = ("dropout: holds if the gap without dropout is at least 5 points and dropout's gap "
          "is smaller by more than the two stds added; in direction only if smaller; else "
          "does not hold. LRN: holds if LRN lowers the mean test error by at least 0.7 "
          "points (half the paper's 1.4) and by more than the two stds added; in direction "
          "only if it lowers it; else does not hold. The entry's verdict is the weaker of "
          "the two")

  def sweeps(self, budget: str):
    seeds = 1 if budget == "tiny" else 3
    nets = dict(NETS)
    if budget == "cpu":  # PyTorch's init: no LRN at the paper's pixel range diverges
      nets["no_lrn"] = {**NETS["no_lrn"], "model_kwargs.input_scale": "1.0"}
    runs = tuple({**nets[net], "seed": str(seed), "name": f"{net}_seed{seed}"}
                 for net in nets for seed in range(seeds))
    if budget == "tiny":
      return (entry.Sweep("nets", "configs/alexnet.py:fashion_mnist,tiny", runs=runs,
                          fixed=(("num_epochs", "2"),)),)
    if budget == "cpu":
      return (entry.Sweep("nets", "configs/alexnet.py:fashion_mnist", runs=runs,
                          fixed=(("num_train_examples", "1000"),
                                 ("eval_every_epochs", "30"))),)
    # full: the paper's width and init on CIFAR-10 (all 50,000 images) upsampled to 224;
    # input_scale 64 = 255 x CIFAR-10's pixel std (0.25).
    return (entry.Sweep("nets", "configs/alexnet.py:fashion_mnist", runs=runs, fixed=(
        ("dataset", "cifar10"), ("image_size", "224"), ("model_kwargs.width", "1.0"),
        ("model_kwargs.weight_init", "paper"), ("model_kwargs.input_scale", "64.0"),
        ("learning_rate", "0.01"), ("batch_size", "128"), ("num_epochs", "60"),
        ("eval_batch_size", "500"))),)

  def judge(self, m: dict[str, Any]) -> str:
    return weaker(self.judge_dropout(m), self.judge_lrn(m))

  @staticmethod
  def judge_dropout(m: dict[str, Any]) -> str:
    (with_gap, with_std), (without_gap, without_std) = m["gap"]["paper"], m["gap"]["no_dropout"]
    if with_gap >= without_gap:
      return "does not hold"
    if without_gap >= MIN_OVERFIT_POINTS and without_gap - with_gap > with_std + without_std:
      return "holds"
    return "holds in direction only"

  @staticmethod
  def judge_lrn(m: dict[str, Any]) -> str:
    (lrn, lrn_std), (none, none_std) = m["test_error"]["paper"], m["test_error"]["no_lrn"]
    gain = none - lrn
    if gain <= 0:
      return "does not hold"
    if gain >= PAPER_LRN_POINTS / 2 and gain > lrn_std + none_std:
      return "holds"
    return "holds in direction only"

  def analyze(self, budget: str, sweep_dirs: dict[str, str], out_dir: str) -> entry.Result:
    from launch import collect  # pylint: disable=g-import-not-at-top
    sweep_dir = sweep_dirs["nets"]
    rows = _finished(collect.collect(sweep_dir, quiet=True), sweep_dir, self.id)
    per: dict[str, list[dict[str, float]]] = {net: [] for net in NETS}
    for r in rows:
      net = r["name"].rsplit("_seed", 1)[0]
      train = 100 * train_accuracy(r["workdir"])
      test = 100 * r["accuracy"]
      per[net].append({"seed": _seed(r["name"]), "train": train, "test": test})
    missing = [net for net, v in per.items() if not v]
    if missing:
      raise RuntimeError(f"{self.id}: no finished run of {missing} in {sweep_dir}")
    gap = {net: entry.mean_std([p["train"] - p["test"] for p in v]) for net, v in per.items()}
    test_error = {net: entry.mean_std([100 - p["test"] for p in v]) for net, v in per.items()}
    dataset = entry.dataset_name(rows[0]["dataset"])
    m = {"gap": gap, "test_error": test_error, "seeds": min(len(v) for v in per.values()),
         "dataset": dataset,
         "train_accuracy": {net: entry.mean_std([p["train"] for p in v]) for net, v in per.items()},
         "verdicts": {}}
    m["verdicts"] = {"dropout": self.judge_dropout(m), "lrn": self.judge_lrn(m)}
    verdict = self.judge(m)
    table = [{"net": net, "seeds": len(per[net]),
              "train acc % (eval mode)": m["train_accuracy"][net][0],
              "test acc %": statistics.fmean(p["test"] for p in per[net]),
              "gap (points)": gap[net][0], "gap std": gap[net][1],
              "test error %": test_error[net][0], "test error std": test_error[net][1]}
             for net in NETS]
    files = entry.write_table(out_dir, table, list(table[0]), self.title)
    files.append(_plot_nets(per, os.path.join(out_dir, "dropout_lrn.png")))
    ours = (f"gap {gap['no_dropout'][0]:.1f} +- {gap['no_dropout'][1]:.1f} points without "
            f"dropout, {gap['paper'][0]:.1f} +- {gap['paper'][1]:.1f} with "
            f"({m['verdicts']['dropout']}); LRN changes test error by "
            f"{test_error['paper'][0] - test_error['no_lrn'][0]:+.2f} points "
            f"({m['verdicts']['lrn']}) ({m['seeds']} seeds, {dataset}, 1,000 train images, "
            "AlexNet 1/8 width)" if budget != "full" else
            f"gap {gap['no_dropout'][0]:.1f} without dropout, {gap['paper'][0]:.1f} with; "
            f"LRN {test_error['paper'][0] - test_error['no_lrn'][0]:+.2f} points "
            f"({m['seeds']} seeds, {dataset}, AlexNet)")
    return entry.Result(m, verdict, ours, files)


def _plot_nets(per: dict[str, list[dict[str, float]]], path: str) -> str:
  fig, (ax1, ax2) = entry.figure(ncols=2, figsize=(9, 3.8))
  nets = list(per)
  for i, net in enumerate(nets):
    for j, (key, color) in enumerate((("train", "C0"), ("test", "C1"))):
      values = [p[key] for p in per[net]]
      ax1.bar(i + (j - 0.5) * 0.38, statistics.fmean(values), 0.38, color=color,
              label=key if i == 0 else None)
      ax1.plot([i + (j - 0.5) * 0.38] * len(values), values, "k.", ms=4)
    errors = [100 - p["test"] for p in per[net]]
    ax2.bar(i, statistics.fmean(errors), 0.6, color="C2")
    ax2.plot([i] * len(errors), errors, "k.", ms=4)
  for ax in (ax1, ax2):
    ax.set_xticks(range(len(nets)), nets)
    ax.grid(alpha=0.3, axis="y")
  ax1.set(ylabel="accuracy (%)", title="train (eval mode) and test accuracy")
  lo = min(p["test"] for v in per.values() for p in v)
  ax1.set_ylim(max(0.0, lo - 10), 100.5)
  ax1.legend()
  ax2.set(ylabel="test error (%)", title="test error (dots: seeds)")
  errs = [100 - p["test"] for v in per.values() for p in v]
  ax2.set_ylim(max(0.0, min(errs) - 3), max(errs) + 2)
  return entry.save(fig, path)
