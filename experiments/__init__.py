"""The history as experiments: each claim of the CNN story as an entry that runs the
sweeps testing it, measures, and gives a verdict by a rule written before the runs.

  python experiments/run.py --budget cpu                # every entry; docs/history/README.md
  python experiments/run.py --budget cpu --only lecun1989
  python experiments/run.py --list

``entry.py`` says what an entry is; each module here is one claim (or a family's claims).
"""

from __future__ import annotations

from experiments.entry import BUDGETS, Entry, Result, Sweep  # noqa: F401
from experiments.alexnet import AlexNetReLU, DropoutLRN
from experiments.batchnorm import BatchNorm
from experiments.cost_vs_resolution import CostVsResolution
from experiments.data_scaling import ViTData
from experiments.degradation import Degradation
from experiments.densenet_se import DenseNetSE
from experiments.googlenet import GoogLeNetReductions
from experiments.lecun1989 import LeCun1989
from experiments.mobilenet import MobileNetSeparable, MobileNetV2Linear
from experiments.roadmap import ConvNeXtRoadmap
from experiments.vgg import VGGStacks

# In the story's order.
ENTRIES: tuple[Entry, ...] = (
    LeCun1989(),  # 1989
    AlexNetReLU(), DropoutLRN(),  # 2012
    VGGStacks(), GoogLeNetReductions(),  # 2014
    BatchNorm(),  # 2015
    Degradation(),  # 2016
    DenseNetSE(),  # 2017-2018
    MobileNetSeparable(), MobileNetV2Linear(),  # 2017-2018
    ViTData(), CostVsResolution(),  # 2021
    ConvNeXtRoadmap(),  # 2022
)


def get(entry_id: str) -> Entry:
  for e in ENTRIES:
    if e.id == entry_id:
      return e
  raise KeyError(f"no experiment {entry_id!r}; known: {', '.join(e.id for e in ENTRIES)}")
