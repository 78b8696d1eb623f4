"""Claim 10, ViT and data (Dosovitskiy et al. 2021, Sec. 4.3, Fig. 3 and 4): with less
inductive bias than a CNN (no locality or translation equivariance built in), a Vision
Transformer overfits more on small training sets and catches up with, then overtakes,
ResNets only as the data grows (Fig. 4: ViT-B/32 below ResNet-50x1 on 9M JFT images,
above it from 90M; Fig. 3: ViT-L/16 below BiT on ImageNet, above it on JFT-300M).

Here: test accuracy against the number of training images for a small ViT, a small
ResNet (ResNet-20) and a small ConvNeXt, trained from scratch on class-balanced subsets
of one dataset (``num_train_examples``). Choices, where the paper's setting cannot be
copied:

* Same compute for every run: every model and every subset sees the same number of
  training images (``IMAGES_PER_RUN``: one epoch of the largest subset, many of the
  smallest), at one batch size, so the runs differ only in how many distinct images
  they see. As Sec. 4.3, "the same hyper-parameters for all settings" and no added
  regularisation on the small subsets: one recipe for the three models (AdamW, warm-up
  over 5% of the steps then cosine, weight decay 0.05, gradient clipping at 1, no
  augmentation, no dropout, no label smoothing), not tuned per model.
* Comparable compute per image, not parameters: at the cpu budget (28x28
  Fashion-MNIST) ViT with 7x7 patches (16 tokens), D 64, 4 layers, 4 heads, MLP 128:
  2.4M multiply-adds, 139k parameters; ResNet-20 at width 4 (4/8/16 channels): 2.0M,
  17k; ConvNeXt with three stages (the 4x4 patchify stem leaves 7x7, 3x3, 1x1 maps)
  dims (32, 64, 128), depths (1, 1, 2): 1.2M, 367k. The results table gives each run's
  count, read back from the runs.
* The sweep runs on ``configs/resnet20_cifar.py``, whose model fields are empty, only
  as the carrier of the data settings; the recipe above is set explicitly on every run
  (``RECIPE``), so no run inherits a model-specific default.
* Three seeds at both the cpu and the full budget, each size's accuracy their mean. The 36
  cpu runs are short (a few seconds of training each, the rest start-up and compiling),
  so they run two at a time (``launch/sweep.py --runner processes``), seed after seed:
  each (model, size) compiles at its first seed and the compilation cache serves the
  others.
"""

from __future__ import annotations

import os
import statistics
from typing import Any

from experiments import entry

VIT, RESNET, CONVNEXT = "ViT", "ResNet-20", "ConvNeXt"
CNNS = (RESNET, CONVNEXT)
# Registered model -> the label of this entry's table.
MODEL_LABELS = {"vit_b16": VIT, "resnet20": RESNET, "convnext_t": CONVNEXT}

# Per budget: the base config, the subset sizes, the images every run sees, the batch,
# the seeds, the models' fields, and the data fields fixed for every run.
BUDGET_SETTINGS: dict[str, dict[str, Any]] = {
    "tiny": dict(
        config="configs/resnet20_cifar.py", sizes=(100, 200), images=200, batch=25,
        seeds=(0,), data=(("dataset", "synthetic"), ("synthetic.shape", "(16,16,1)"),
                          ("synthetic.num_train", "200"), ("synthetic.num_test", "100"),
                          ("eval_batch_size", "100")),
        models={
            VIT: dict(model="vit_b16", image_size=16, patch_size=4, hidden_size=16,
                      num_layers=1, num_heads=2, mlp_dim=32),
            RESNET: dict(model="resnet20", width=4, blocks_per_stage=1),
            CONVNEXT: dict(model="convnext_t", dims="(8,16,32)", depths="(1,1,1)")}),
    "cpu": dict(
        config="configs/resnet20_cifar.py:fashion_mnist", sizes=(1000, 2000, 5000, 20000),
        images=20000, batch=100, seeds=(0, 1, 2),
        data=(("pad", "0"), ("eval_batch_size", "1000")),
        models={
            VIT: dict(model="vit_b16", image_size=28, patch_size=7, hidden_size=64,
                      num_layers=4, num_heads=4, mlp_dim=128),
            RESNET: dict(model="resnet20", width=4),
            CONVNEXT: dict(model="convnext_t", dims="(32,64,128)", depths="(1,1,2)")}),
    "full": dict(  # CIFAR-10 (TFDS), 100 epochs of the whole training set per run
        config="configs/resnet20_cifar.py", sizes=(1000, 5000, 20000, 50000),
        images=5_000_000, batch=100, seeds=(0, 1, 2), data=(("eval_batch_size", "1000"),),
        models={
            VIT: dict(model="vit_b16", image_size=32, patch_size=4, hidden_size=192,
                      num_layers=6, num_heads=3, mlp_dim=768),
            RESNET: dict(model="resnet20"),
            CONVNEXT: dict(model="convnext_t", dims="(48,96,192,384)",
                           depths="(2,2,6,2)")}),
}

# One recipe for every model and subset (see the module docstring).
RECIPE = (("optimizer", "adamw"), ("learning_rate", "0.002"), ("lr_base_batch_size", "0"),
          ("weight_decay", "0.05"), ("schedule", "cosine"), ("decay_epochs", "()"),
          ("min_learning_rate", "0.0"), ("grad_clip_norm", "1.0"),
          ("label_smoothing", "0.0"), ("ema_decay", "0.0"), ("augment.crop_padding", "0"),
          ("augment.flip", "False"), ("augment.random_erasing", "0.0"))
WARMUP = 0.05  # of each run's steps


def _run(label: str, fields: dict[str, Any], n: int, seed: int, s: dict[str, Any]) -> dict:
  """One run's overrides: the model, the subset, and epochs for ``s['images']`` images."""
  if s["images"] % n or n % s["batch"]:
    raise ValueError(f"vit_data: {s['images']} images per run must be whole epochs of "
                     f"{n} images, and {n} whole batches of {s['batch']}")
  epochs = s["images"] // n
  run = {"model": fields["model"],
         **{f"model_kwargs.{k}": str(v) for k, v in fields.items() if k != "model"},
         "num_train_examples": str(n), "num_epochs": str(epochs), "seed": str(seed),
         "warmup_epochs": f"{WARMUP * epochs:g}", "eval_every_epochs": str(epochs),
         "checkpoint_every_epochs": str(epochs)}
  run["name"] = f"{label.lower().replace('-', '')}_n{n}_seed{seed}"
  return run


class ViTData(entry.Entry):
  id = "vit_data"
  title = "ViT needs data: accuracy against training-set size"
  claim = ("ViT overfits more than CNNs on small training sets; the CNNs' lead shrinks "
           "(and ViT overtakes them) as the data grows")
  source = "Dosovitskiy et al. 2021, Sec. 4.3, Fig. 3 and 4"
  paper = ("ViT-B/32 below ResNet-50x1 with 9M JFT images, above it from 90M (Fig. 4); "
           "ViT-L/16 below BiT on ImageNet-1k, above it on JFT-300M (Fig. 3)")
  metric = ("test accuracy of ViT, ResNet-20 and ConvNeXt against the number of training "
            "images, each run seeing the same number of images; the CNNs' lead = the mean "
            "of the two CNNs' accuracies minus ViT's (points), at the smallest and the "
            "largest subset")
  rule = ("holds: both CNNs beat ViT at the smallest subset, and the CNNs' lead shrinks "
          "from the smallest to the largest subset by at least 1 point and by at least a "
          "quarter of its value at the smallest; holds in direction only: both CNNs beat "
          "ViT at the smallest and the lead shrinks by less; does not hold: otherwise")

  def sweeps(self, budget: str):
    s = BUDGET_SETTINGS[budget]
    runs = tuple(_run(label, fields, n, seed, s) for seed in s["seeds"]
                 for label, fields in s["models"].items() for n in s["sizes"])
    fixed = (*s["data"], ("batch_size", str(s["batch"])), ("log_every_steps", "50"), *RECIPE)
    return (entry.Sweep("sizes", s["config"], runs=runs, fixed=fixed,
                        parallel=2 if budget == "cpu" else 1),)

  def judge(self, m: dict[str, Any]) -> str:
    acc = m["accuracy"]  # {model: {n: mean test accuracy, %}}
    sizes = sorted(acc[VIT])
    small, large = sizes[0], sizes[-1]
    if not all(acc[c][small] > acc[VIT][small] for c in CNNS):
      return "does not hold"
    lead = lambda n: statistics.fmean(acc[c][n] for c in CNNS) - acc[VIT][n]
    shrink = lead(small) - lead(large)
    if shrink >= max(1.0, 0.25 * lead(small)):
      return "holds"
    return "holds in direction only" if shrink > 0 else "does not hold"

  def analyze(self, budget: str, sweep_dirs: dict[str, str], out_dir: str) -> entry.Result:
    from launch import collect  # pylint: disable=g-import-not-at-top
    from training import rundir  # pylint: disable=g-import-not-at-top
    rows = collect.collect(sweep_dirs["sizes"], quiet=True)
    runs: dict[tuple[str, int], list[dict[str, float]]] = {}
    info: dict[str, dict[str, Any]] = {}
    for r in rows:
      if r["status"] != "finished":
        continue
      label = MODEL_LABELS[r["model"]]
      n = int(r["overrides"]["num_train_examples"])
      train = [m["train_accuracy"] for m in rundir.read_metrics(r["workdir"])
               if "train_accuracy" in m]
      runs.setdefault((label, n), []).append(
          {"test": 100 * r["accuracy"], "train": 100 * train[-1] if train else float("nan")})
      info[label] = {"params": r["params"], "macs": r["macs"]}
    sizes = BUDGET_SETTINGS[budget]["sizes"]
    missing = [f"{label} n={n}" for label in (VIT, *CNNS) for n in sizes
               if (label, n) not in runs]
    if missing:
      raise RuntimeError(f"{self.id}: no finished run of {', '.join(missing)} in "
                         f"{sweep_dirs['sizes']}")
    mean = lambda vals: statistics.fmean(vals)
    acc = {label: {n: mean([v["test"] for v in runs[label, n]]) for n in sizes}
           for label in (VIT, *CNNS)}
    lead = {n: mean([acc[c][n] for c in CNNS]) - acc[VIT][n] for n in sizes}
    seeds = min(len(v) for v in runs.values())
    dataset = entry.dataset_name(rows[0]["dataset"])
    m = {"accuracy": acc, "cnn_lead": lead, "seeds": seeds, "dataset": dataset,
         "models": info}
    verdict = self.judge(m)
    table = []
    for label in (VIT, *CNNS):
      for n in sizes:
        vals = runs[label, n]
        test = [v["test"] for v in vals]
        table.append({
            "model": label, "train images": n,
            "epochs": BUDGET_SETTINGS[budget]["images"] // n,
            "test acc %": mean(test), "std": entry.mean_std(test)[1],
            "train acc % (last log)": mean([v["train"] for v in vals]),
            "train - test": mean([v["train"] - v["test"] for v in vals]),
            "CNNs' lead over ViT": lead[n] if label == VIT else "",
            "params": info[label]["params"], "MACs": info[label]["macs"], "seeds": len(vals)})
    files = entry.write_table(out_dir, table, list(table[0]), self.title)
    files.append(_plot(acc, runs, lead, os.path.join(out_dir, "accuracy_vs_data.png"),
                       dataset))
    small, large = sizes[0], sizes[-1]
    macs = [v["macs"] / 1e6 for v in info.values() if v["macs"]]
    cost = f" at {min(macs):.2g}-{max(macs):.2g}M MACs" if macs else ""
    ours = (f"CNNs' lead over ViT {lead[small]:+.1f} points at {small:,} images, "
            f"{lead[large]:+.1f} at {large:,} ({seeds} seed{'s' * (seeds > 1)}, {dataset}, "
            f"ViT/ResNet-20/ConvNeXt{cost}, the same images seen per run)")
    return entry.Result(m, verdict, ours, files)


def _plot(acc, runs, lead, path: str, dataset: str) -> str:
  fig, (ax, ax2) = entry.figure(ncols=2, figsize=(10, 4))
  for label, style in ((VIT, "o-"), (RESNET, "s-"), (CONVNEXT, "^-")):
    sizes = sorted(acc[label])
    ax.semilogx(sizes, [acc[label][n] for n in sizes], style, label=label)
    ax2.semilogx(sizes, [statistics.fmean(v["train"] - v["test"] for v in runs[label, n])
                         for n in sizes], style, label=label)
  sizes = sorted(lead)
  ax.set(xlabel="training images", ylabel="test accuracy (%)",
         title=f"Accuracy against data ({dataset})")
  ax.legend(title="CNNs' lead: " + ", ".join(f"{lead[n]:+.1f}" for n in sizes), fontsize=8)
  ax2.axhline(0, color="k", lw=0.5)
  ax2.set(xlabel="training images", ylabel="train - test accuracy (points)",
          title="Overfitting (last training log - test)")
  ax2.legend(fontsize=8)
  for a in (ax, ax2):
    a.grid(alpha=0.3, which="both")
  return entry.save(fig, path)
