"""Claim 11, cost against resolution: self-attention's cost grows with the square of the
token count, a convolution's linearly with the pixels (Dosovitskiy et al. 2021, Sec. 3.1
and 4.3; Liu et al. 2022, Sec. 1: ConvNeXt "linear complexity with respect to image
size"). Analysis only: multiply-adds of ViT-B/16 and ConvNeXt-T, one image, from the
models' own jaxprs (``analysis.count_macs``), at each resolution.
"""

from __future__ import annotations

import math
import os
from typing import Any

from experiments import entry

RESOLUTIONS = {"tiny": (32, 64), "cpu": (32, 64, 128, 224, 384, 512),
               "full": (32, 64, 128, 224, 384, 512, 768, 1024)}


class CostVsResolution(entry.Entry):
  id = "cost_vs_resolution"
  title = "Cost against resolution: attention against convolution"
  claim = ("ViT's multiply-adds grow faster than the pixel count (attention: tokens "
           "squared), ConvNeXt's in proportion to it")
  source = "Dosovitskiy et al. 2021, Sec. 3.1; Liu et al. 2022, Sec. 1"
  paper = "attention O(N^2) in the N tokens; convolution O(N)"
  metric = ("the slope of log multiply-adds against log pixels between the two largest "
            "resolutions, and the attention products' share of ViT's multiply-adds")
  rule = ("holds: ConvNeXt's slope within 1 +- 0.05 and ViT's at least 1.10; holds in "
          "direction only: ViT's slope above ConvNeXt's; does not hold: otherwise")

  def judge(self, m: dict[str, Any]) -> str:
    vit, cnx = m["slope"]["vit_b16"], m["slope"]["convnext_t"]
    if abs(cnx - 1) <= 0.05 and vit >= 1.10:
      return "holds"
    return "holds in direction only" if vit > cnx else "does not hold"

  def analyze(self, budget: str, sweep_dirs: dict[str, str], out_dir: str) -> entry.Result:
    del sweep_dirs
    import models  # pylint: disable=g-import-not-at-top
    import analysis  # pylint: disable=g-import-not-at-top
    sides = RESOLUTIONS[budget]
    macs: dict[str, dict[int, int]] = {"vit_b16": {}, "convnext_t": {}}
    rows = []
    for side in sides:
      vit = models.create_model("vit_b16", num_classes=1000, image_size=side)
      cnx = models.create_model("convnext_t", num_classes=1000)
      macs["vit_b16"][side] = analysis.count_macs(vit, (1, side, side, 3))
      macs["convnext_t"][side] = analysis.count_macs(cnx, (1, side, side, 3))
      tokens = (side // vit.patch_size) ** 2 + 1
      # Q K^T and A V in every block: 2 N^2 D multiply-adds each layer.
      attention = vit.num_layers * 2 * tokens ** 2 * vit.hidden_size
      rows.append({"side": side, "pixels": side * side, "vit_tokens": tokens,
                   "vit_gmacs": macs["vit_b16"][side] / 1e9,
                   "vit_attention_share": attention / macs["vit_b16"][side],
                   "convnext_gmacs": macs["convnext_t"][side] / 1e9})
    lo, hi = sides[-2], sides[-1]
    slope = {name: math.log(v[hi] / v[lo]) / math.log((hi / lo) ** 2)
             for name, v in macs.items()}
    m = {"macs": macs, "slope": slope, "between": (lo, hi),
         "vit_attention_share": {r["side"]: r["vit_attention_share"] for r in rows}}
    verdict = self.judge(m)
    files = entry.write_table(out_dir, rows, list(rows[0]), self.title)
    files.append(_plot(macs, os.path.join(out_dir, "macs_vs_resolution.png")))
    share = m["vit_attention_share"]
    ours = (f"slope {slope['vit_b16']:.2f} (ViT-B/16) against {slope['convnext_t']:.2f} "
            f"(ConvNeXt-T) from {lo} to {hi} px; attention {100 * share[sides[0]]:.1f}% of "
            f"ViT's MACs at {sides[0]} px, {100 * share[hi]:.1f}% at {hi}")
    return entry.Result(m, verdict, ours, files)


def _plot(macs: dict[str, dict[int, int]], path: str) -> str:
  fig, ax = entry.figure(figsize=(6, 4))
  for name, label in (("vit_b16", "ViT-B/16"), ("convnext_t", "ConvNeXt-T")):
    sides = sorted(macs[name])
    ax.loglog([s * s for s in sides], [macs[name][s] / 1e9 for s in sides], "o-", label=label)
  s0 = min(macs["convnext_t"])
  ref = macs["convnext_t"][s0] / 1e9
  xs = [s * s for s in sorted(macs["convnext_t"])]
  ax.loglog(xs, [ref * x / xs[0] for x in xs], "k:", lw=1, label="linear in pixels")
  ax.set(xlabel="pixels per image", ylabel="GMACs per image",
         title="Multiply-adds against resolution")
  ax.legend()
  ax.grid(alpha=0.3, which="both")
  return entry.save(fig, path)
