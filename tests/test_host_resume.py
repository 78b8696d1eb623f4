"""input_pipeline/host.py: exact resume of the training stream (issue 13).

A stream started at ``start_step=k`` must yield, bitwise, the batches an uninterrupted
stream yields from step k on, whether k is mid-epoch or on an epoch boundary; each
epoch must be a new order that holds every example once (when the epoch is a whole
number of batches). Sources: a TFDS dataset prepared on disk in three record files
(read by the seeded file-order reader, and by ``as_dataset``'s fixed order as under
``tfds.testing.mock_data``), and a ``tf.data.Dataset``. Labels are example indices.
"""

import numpy as np
import pytest

from input_pipeline import host
from input_pipeline.datasets import DatasetError

tf = pytest.importorskip("tensorflow")
tfds = pytest.importorskip("tensorflow_datasets")

NUM_TRAIN = 40
BATCH = 8  # 5 steps per epoch: an epoch is a whole number of batches.
STEPS_PER_EPOCH = NUM_TRAIN // BATCH
NUM_STEPS = 12  # Epochs 0, 1 and the start of 2.


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
  """A prepared TFDS dataset: 40 JPEGs, 10..29 pixels a side, 3 files; label = index."""

  class ResumeJpeg(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    VERSION = tfds.core.Version("1.0.0")

    def _info(self):
      return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict({
          "image": tfds.features.Image(shape=(None, None, 3), encoding_format="jpeg"),
          "label": tfds.features.ClassLabel(num_classes=NUM_TRAIN)}))

    def _split_generators(self, dl_manager):
      del dl_manager
      return {"train": self._generate_examples()}

    def _generate_examples(self):
      rng = np.random.default_rng(0)
      for i in range(NUM_TRAIN):
        shape = (int(rng.integers(10, 30)), int(rng.integers(10, 30)), 3)
        yield i, {"image": rng.integers(0, 256, shape, dtype=np.uint8), "label": i}

  builder = ResumeJpeg(data_dir=str(tmp_path_factory.mktemp("tfds")))
  builder.download_and_prepare(download_config=tfds.download.DownloadConfig(
      compute_stats=tfds.download.ComputeStatsMode.SKIP, num_shards=3))
  assert builder.info.splits["train"].num_shards == 3
  return builder


@pytest.fixture(params=["tfds_files", "tfds_fixed_files", "dataset"])
def source(request, prepared, monkeypatch):
  if request.param == "tfds_fixed_files":  # The as_dataset fallback (mock_data, ...).
    monkeypatch.setattr(host, "_record_reader", lambda *args: None)
  if request.param == "dataset":
    ds = host.fake_jpeg_dataset(NUM_TRAIN, height_range=(10, 30), width_range=(10, 30),
                                num_classes=NUM_TRAIN, num_distinct=8)
    return ds.enumerate().map(lambda i, ex: {"image": ex["image"], "label": i})
  return prepared


def _stream(source, n, **kw):
  kw = {"global_batch_size": BATCH, "image_size": 16, "seed": 3, "process_index": 0,
        "process_count": 1, "shuffle_buffer": 8, **kw}
  return list(host.train_dataset(source, **kw).take(n).as_numpy_iterator())


def _assert_same(got, expected):
  assert len(got) == len(expected)
  for step, (a, b) in enumerate(zip(got, expected)):
    np.testing.assert_array_equal(a["labels"], b["labels"], err_msg=f"step {step}")
    np.testing.assert_array_equal(a["images"], b["images"], err_msg=f"step {step}")


def _epochs(batches, steps_per_epoch):
  labels = np.concatenate([b["labels"] for b in batches])
  per_epoch = steps_per_epoch * len(batches[0]["labels"])
  return [labels[i:i + per_epoch] for i in range(0, len(labels), per_epoch)]


@pytest.mark.parametrize("shuffle_buffer", [8, host.DEFAULT_SHUFFLE_BUFFER])
def test_resume_replays_the_uninterrupted_stream(source, shuffle_buffer):
  full = _stream(source, NUM_STEPS, shuffle_buffer=shuffle_buffer)
  for k in (3, STEPS_PER_EPOCH, 2 * STEPS_PER_EPOCH - 1):  # Mid-epoch, boundary, last.
    _assert_same(_stream(source, NUM_STEPS - k, shuffle_buffer=shuffle_buffer,
                         start_step=k), full[k:])


def test_epochs_are_reshuffled_and_hold_every_example_once(source):
  epochs = _epochs(_stream(source, 3 * STEPS_PER_EPOCH), STEPS_PER_EPOCH)
  for labels in epochs:
    assert sorted(labels.tolist()) == list(range(NUM_TRAIN))
  assert len({tuple(e.tolist()) for e in epochs}) == 3


def test_file_order_changes_per_epoch_without_a_shuffle_buffer(prepared):
  """shuffle_buffer=1: the files are read one after another (each has <= 16 examples,
  the interleave's block), so each epoch is the 3 files in some order."""
  epochs = _epochs(_stream(prepared, 4 * STEPS_PER_EPOCH, shuffle_buffer=1),
                   STEPS_PER_EPOCH)
  for labels in epochs:
    assert sorted(labels.tolist()) == list(range(NUM_TRAIN))
  assert len({tuple(e.tolist()) for e in epochs}) > 1


@pytest.mark.parametrize("kind", ["tfds", "dataset"])
def test_two_processes_resume_their_own_parts(prepared, kind):
  """Process p's batch at step s after a resume is its batch at step s; the two
  processes' parts of an epoch are disjoint and together every example."""
  if kind == "tfds":
    src = prepared
  else:
    src = host.fake_jpeg_dataset(NUM_TRAIN, height_range=(10, 30), width_range=(10, 30),
                                 num_classes=NUM_TRAIN, num_distinct=8)
    src = src.enumerate().map(lambda i, ex: {"image": ex["image"], "label": i})
  full = [_stream(src, NUM_STEPS, process_index=p, process_count=2) for p in range(2)]
  for p in range(2):
    assert full[p][0]["labels"].shape == (BATCH // 2,)
    _assert_same(_stream(src, NUM_STEPS - 7, process_index=p, process_count=2,
                         start_step=7), full[p][7:])
  parts = [_epochs(f, STEPS_PER_EPOCH) for f in full]
  for e in range(2):
    assert sorted(np.concatenate([parts[0][e], parts[1][e]]).tolist()) == list(
        range(NUM_TRAIN))


def test_partial_epochs_drop_the_remainder(prepared):
  """12-example batches: 3 steps an epoch use 36 of the 40 examples, each at most once,
  and a resume is still exact."""
  full = _stream(prepared, 7, global_batch_size=12, shuffle_buffer=40)
  epochs = _epochs(full, 3)
  for labels in epochs[:2]:
    assert len(labels) == 36 and len(set(labels.tolist())) == 36
  _assert_same(_stream(prepared, 3, global_batch_size=12, shuffle_buffer=40,
                       start_step=4), full[4:])
  # An explicit steps_per_epoch: 2 steps (24 examples) an epoch.
  short = _epochs(_stream(prepared, 4, global_batch_size=12, shuffle_buffer=40,
                          steps_per_epoch=2), 2)
  assert [len(set(e.tolist())) for e in short] == [24, 24]


def test_bad_resume_arguments(prepared):
  with pytest.raises(DatasetError, match="smallest of the 2 parts"):
    _stream(prepared, 1, process_count=2, steps_per_epoch=6)
  with pytest.raises(DatasetError, match="start_step"):
    _stream(prepared, 1, start_step=-1)
  unknown = tf.data.Dataset.from_tensors({"image": b"", "label": 0}).repeat().filter(
      lambda ex: True)
  with pytest.raises(DatasetError, match="steps_per_epoch"):
    _stream(unknown, 1)
