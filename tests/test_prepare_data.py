"""Tests for tools/prepare_data.py: the documented way to prepare a TFDS dataset works
from requirements.txt alone, offline, on a tiny local dataset."""

from __future__ import annotations

import numpy as np
import pytest

tfds = pytest.importorskip("tensorflow_datasets")

from input_pipeline import datasets  # noqa: E402  pylint: disable=g-import-not-at-top
from tools import prepare_data  # noqa: E402  pylint: disable=g-import-not-at-top


class PrepareDataTiny(tfds.core.GeneratorBasedBuilder):
  """Eight 8x8 grey images, two classes, made in place: no network."""
  VERSION = tfds.core.Version("1.0.0")

  def _info(self):
    return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict({
        "image": tfds.features.Image(shape=(8, 8, 1)),
        "label": tfds.features.ClassLabel(num_classes=2)}))

  def _split_generators(self, dl_manager):
    del dl_manager
    return {"train": self._generate_examples(0, 6), "test": self._generate_examples(6, 2)}

  def _generate_examples(self, start, n):  # pylint: disable=arguments-differ
    for i in range(start, start + n):
      yield i, {"image": np.full((8, 8, 1), 30 * i, np.uint8), "label": i % 2}


def test_tfds_can_resolve_a_builders_code(tmp_path):
  """TFDS imports importlib_resources (undeclared) on this path: requirements.txt has it."""
  assert tfds.builder("mnist", data_dir=str(tmp_path)).code_path


def test_prepares_offline_and_train_loads_it(tmp_path, capsys):
  assert prepare_data.main(["prepare_data_tiny", "--data_dir", str(tmp_path)]) == 0
  assert "--config.dataset=prepare_data_tiny" in capsys.readouterr().out
  ds = datasets.load_dataset("prepare_data_tiny", data_dir=str(tmp_path), download=False)
  assert (len(ds.train_labels), len(ds.test_labels), ds.num_classes) == (6, 2, 2)
  np.testing.assert_array_equal(ds.train_images[3, 0, 0], [90])


def test_unknown_name_is_one_line(tmp_path, capfd):
  """One line on file descriptor 2 as well: TFDS's C++ cloud-credential probe stays quiet."""
  assert prepare_data.main(["cifar1O", "--data_dir", str(tmp_path)]) == 2
  err = capfd.readouterr().err
  assert err.startswith("error: unknown TFDS dataset 'cifar1O'") and err.count("\n") == 1
  assert "cifar10" in err and ".." not in err
