"""The "none of the above" class of LeNet-5's sliding-window (SDNN) training.

LeCun et al. 1998 (Sec. VII.C) trained the network that reads a whole zip code or
cheque amount by sliding over it with an extra output for "none of the above": the
windows a well-centred digit does not fill. Without it, every position of a strip is
forced into a digit class and the gaps between digits read as digits.

``add_background_class(ds)`` appends class ``ds.num_classes`` (class 10 for digits) to
both splits, one new example per ``ds.num_classes`` old ones, so the new class is as
frequent as an average digit. A tenth of them are blank images (the background level, 0);
the rest are windows between centres: a digit shifted left or right by about half a
digit width (``HALF_WIDTH`` +-2 pixels, or half the image if narrower), and, in half of those, the neighbouring digit on
the other side at the same distance, as in the gap of a strip. The images come from the
split's own digits (test windows from test digits), drawn with a fixed seed, so a run
and its resumption see the same data.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from input_pipeline.datasets import ArrayDataset, DatasetError, _channel_mean_std

# Half a digit's width in pixels: MNIST digits fill a 20x20 box (USPS a 16x16 image).
HALF_WIDTH = 10
BLANK_FRACTION = 0.1


def _shift(images: np.ndarray, dx: np.ndarray) -> np.ndarray:
  """Each image moved ``dx`` pixels to the right (left if negative), background filled."""
  out = np.zeros_like(images)
  w = images.shape[2]
  for i, d in enumerate(dx):
    if d >= 0:
      out[i, :, d:] = images[i, :, :w - d]
    else:
      out[i, :, :w + d] = images[i, :, -d:]
  return out


def background_examples(images: np.ndarray, count: int, seed: int) -> np.ndarray:
  """``count`` "none of the above" windows drawn from ``images`` (uint8 NHWC)."""
  rng = np.random.default_rng(seed)
  half = min(HALF_WIDTH, images.shape[2] // 2)  # USPS digits fill their 16x16 images
  n_blank = int(round(count * BLANK_FRACTION))
  n = count - n_blank
  dx = rng.integers(half - 2, half + 3, n) * rng.choice([-1, 1], n)
  windows = _shift(images[rng.integers(0, len(images), n)], dx)
  pair = rng.random(n) < 0.5  # a neighbour on the other side, as in a strip's gap
  neighbours = _shift(images[rng.integers(0, len(images), n)], -dx)
  windows = np.where(pair[:, None, None, None], np.maximum(windows, neighbours), windows)
  blank = np.zeros((n_blank, *images.shape[1:]), images.dtype)
  return np.concatenate([blank, windows])


def add_background_class(ds: ArrayDataset, seed: int = 0) -> ArrayDataset:
  """``ds`` with class ``ds.num_classes`` ("none of the above") added to both splits."""
  if ds.image_shape[1] < 8:
    raise DatasetError(f"background_class needs images at least 8 pixels wide to shift "
                       f"digits off centre; {ds.name} has {ds.image_shape[1]}")
  splits = {}
  for i, split in enumerate(("train", "test")):
    x, y = getattr(ds, f"{split}_images"), getattr(ds, f"{split}_labels")
    extra = background_examples(x, max(1, len(x) // ds.num_classes), seed + i)
    labels = np.full(len(extra), ds.num_classes, np.int32)
    splits[f"{split}_images"] = np.concatenate([x, extra])
    splits[f"{split}_labels"] = np.concatenate([y, labels])
  mean, std = _channel_mean_std(splits["train_images"])
  return dataclasses.replace(ds, **splits, num_classes=ds.num_classes + 1, mean=mean, std=std)
