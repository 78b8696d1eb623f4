"""input_pipeline/host.py and tools/input_benchmark.py: the streaming host pipeline.

Two offline sources: ``tfds.testing.mock_data`` for the real imagenet2012 builder
(random JPEGs; it ignores split slicing, so every process would get the same
examples), and a tiny TFDS dataset prepared in a temporary directory, whose label
is the example's index, for the per-process splits and exact evaluation.
"""

import subprocess
import sys
import types

import jax
import numpy as np
import pytest

from input_pipeline import datasets
from input_pipeline import host
from input_pipeline.recipe import op
from input_pipeline.datasets import DatasetError
from training import parallel

tf = pytest.importorskip("tensorflow")
tfds = pytest.importorskip("tensorflow_datasets")

NUM_TRAIN, NUM_EVAL = 23, 13  # Odd sizes: the two processes' parts differ by one.
RA_SPEC = "rand-m9-n1-mstd0.5-inc1"  # One layer: half the graph to trace.


def _batches(ds, n):
  return list(ds.take(n).as_numpy_iterator())


def _labels(batches, masked=False):
  return np.concatenate([b["labels"][b["mask"]] if masked else b["labels"]
                         for b in batches])


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
  """A prepared TFDS dataset: 23 train and 13 validation JPEGs, label = index."""

  class TinyJpeg(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    VERSION = tfds.core.Version("1.0.0")

    def _info(self):
      return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict({
          "image": tfds.features.Image(shape=(None, None, 3), encoding_format="jpeg"),
          "label": tfds.features.ClassLabel(num_classes=NUM_TRAIN + NUM_EVAL)}))

    def _split_generators(self, dl_manager):
      del dl_manager
      return {"train": self._generate_examples(0, NUM_TRAIN),
              "validation": self._generate_examples(NUM_TRAIN, NUM_EVAL)}

    def _generate_examples(self, start, n):
      rng = np.random.default_rng(start)
      for i in range(start, start + n):
        shape = (int(rng.integers(20, 40)), int(rng.integers(20, 40)), 3)
        yield i, {"image": rng.integers(0, 256, shape, dtype=np.uint8), "label": i}

  builder = TinyJpeg(data_dir=str(tmp_path_factory.mktemp("tfds")))
  builder.download_and_prepare(download_config=tfds.download.DownloadConfig(
      compute_stats=tfds.download.ComputeStatsMode.SKIP))
  return builder


@pytest.fixture(scope="module")
def fake():
  return host.fake_jpeg_dataset(8, height_range=(30, 50), width_range=(30, 60),
                                num_classes=10)


def _train(source, *, image_size=16, scale=(0.08, 1.0), flip=True, resize_method="bicubic",
           ops=None, **kw):
  """The training stream with the Inception crop (or ``ops``), as train.py's plan."""
  if ops is None:
    ops = (op("decode"), op("random_resized_crop", size=image_size, scale=scale,
                            ratio=(3 / 4, 4 / 3), method=resize_method))
    ops += (op("flip"),) if flip else ()
  kw = {"global_batch_size": 4, "seed": 0, "process_index": 0, "process_count": 1, **kw}
  return host.train_dataset(source, image_size=image_size, ops=ops, **kw)


def _png_source(image):
  encoded = tf.io.encode_png(image).numpy()
  return tf.data.Dataset.from_tensor_slices({"image": [encoded], "label": [3]})


def test_import_does_not_import_tensorflow():
  code = ("import sys; import input_pipeline, input_pipeline.host; "
          "assert 'tensorflow' not in sys.modules, 'tensorflow imported'")
  subprocess.run([sys.executable, "-c", code], check=True)


def test_mock_imagenet_train_and_eval():
  with tfds.testing.mock_data(num_examples=10, policy=tfds.testing.MockPolicy.USE_CODE):
    src = host.open_builder("imagenet2012")
    assert (src.num_classes, src.channels, src.eval_split, src.flip) == (
        1000, 3, "validation", True)
    assert src.num_train == src.num_eval == 10
    batch, = _batches(_train(src, image_size=24), 1)
    assert batch["images"].shape == (4, 24, 24, 3) and batch["images"].dtype == np.uint8
    assert batch["labels"].dtype == np.int32
    assert 0 <= batch["labels"].min() and batch["labels"].max() < 1000
    assert batch["images"].std() > 0
    batches = list(host.eval_dataset(src, global_batch_size=4,
                                     ops=host.default_eval_ops(24), process_index=0,
                                     process_count=1).as_numpy_iterator())
  assert len(batches) == host.num_eval_batches(10, 4, 1) == 3
  assert [b["mask"].sum() for b in batches] == [4, 4, 2]
  assert batches[-1]["images"][2:].max() == 0  # Padding is black and masked.


def test_not_prepared_and_unknown_messages(tmp_path):
  with pytest.raises(DatasetError) as e:
    host.open_builder("cifar10", data_dir=str(tmp_path), download=False)
  message = str(e.value)
  assert "not prepared" in message and "tools/prepare_data.py cifar10" in message
  assert str(tmp_path) in message and "\n" not in message
  # Allowed to download, a dataset whose files come by hand says where they go, in its
  # own words, not TFDS's failure text.
  with pytest.raises(DatasetError) as e:
    host.open_builder("imagenet2012", data_dir=str(tmp_path), download=True)
  message = str(e.value)
  assert f"({tmp_path / 'downloads' / 'manual'} is empty)" in message, message
  assert "download failed" not in message and "ILSVRC2012_img_train.tar" in message
  with pytest.raises(DatasetError, match=r"unknown dataset 'imagenet2O12'.*imagenet2012"):
    host.open_builder("imagenet2O12")


def test_eval_split_prefers_the_known_one():
  # imagenet2012's "test" split has no labels (all -1): KNOWN_DATASETS says validation.
  stub = types.SimpleNamespace(info=types.SimpleNamespace(
      splits={"train": None, "validation": None, "test": None}))
  assert datasets._tfds_eval_split("imagenet2012", stub, "validation") == "validation"
  assert datasets._tfds_eval_split("cifar10", stub, "test") == "test"
  del stub.info.splits["test"]
  assert datasets._tfds_eval_split("other", stub, "test") == "validation"


def test_processes_read_disjoint_parts(tiny):
  # 23 examples in batches of 8: an epoch is 2 steps, 8 examples of each process's
  # part (12 and 11 examples), the rest of the part dropped that epoch.
  seen = []
  for index in range(2):
    ds = _train(tiny, global_batch_size=8, process_index=index, process_count=2,
                shuffle_buffer=1)
    labels = _labels(_batches(ds, 2)).tolist()
    assert len(set(labels)) == 8
    seen.append(set(labels))
  assert not seen[0] & seen[1]
  assert seen[0] | seen[1] <= set(range(NUM_TRAIN))


def test_train_deterministic_for_a_seed(tiny):
  a, b, c = (_batches(_train(tiny, seed=s), 3) for s in (1, 1, 2))
  for x, y in zip(a, b):
    np.testing.assert_array_equal(x["images"], y["images"])
    np.testing.assert_array_equal(x["labels"], y["labels"])
  assert any((x["images"] != z["images"]).any() for x, z in zip(a, c))


def test_eval_every_example_once(tiny):
  per_process = [list(host.eval_dataset(tiny, global_batch_size=8,
                                        ops=host.default_eval_ops(16),
                                        process_index=i, process_count=2)
                      .as_numpy_iterator()) for i in range(2)]
  expected = host.num_eval_batches(NUM_EVAL, 8, 2)
  assert expected == 2 and [len(p) for p in per_process] == [expected] * 2
  labels = np.concatenate([_labels(p, masked=True) for p in per_process])
  assert sorted(labels.tolist()) == list(range(NUM_TRAIN, NUM_TRAIN + NUM_EVAL))
  assert sum((~b["mask"]).sum() for p in per_process for b in p) == 2 * 8 - NUM_EVAL
  for b in per_process[0] + per_process[1]:
    assert b["images"].shape == (4, 16, 16, 3) and b["mask"].dtype == bool


@pytest.mark.parametrize("method", ["bilinear", "bicubic"])
def test_eval_transform_is_resize_then_centre_crop(method):
  rng = np.random.default_rng(0)
  image = rng.integers(0, 256, (37, 53, 3), dtype=np.uint8)  # PNG: lossless.
  batch, = list(host.eval_dataset(_png_source(image), global_batch_size=1,
                                  ops=host.default_eval_ops(16, 0.875, method),
                                  process_index=0, process_count=1).as_numpy_iterator())
  # floor(16 / 0.875) = 18; 53 * 18 / 37 = 25.8 -> 25; offsets round(1.0) = 1 and
  # round(4.5) = 4 (half to even, as torchvision's round).
  resized = tf.image.resize(image, (18, 25), method=method, antialias=True).numpy()
  expected = np.clip(np.round(resized[1:17, 4:20]), 0, 255)
  got = batch["images"][0].astype(np.float64)
  assert np.abs(got - expected).max() <= 1  # Only float rounding may differ.
  from PIL import Image  # pylint: disable=g-import-not-at-top
  pil = Image.fromarray(image).resize(
      (25, 18), Image.BICUBIC if method == "bicubic" else Image.BILINEAR)
  pil = np.asarray(pil, np.float64)[1:17, 4:20]
  assert np.abs(got - pil).mean() < 1.5  # timm's PIL transform, up to kernel details.


def test_train_png_and_fallback_centre_crop():
  # Columns hold their index. No 3:4..4:3 crop covers half of a 16x160 image (it
  # would be 16 high and 80 wide), so sampling fails and the reference's central
  # square, 16 / 48 of 16 = 5 pixels wide, is taken: columns 78..82.
  image = np.broadcast_to(np.arange(160, dtype=np.uint8)[None, :, None], (16, 160, 3))
  batch, = _batches(_train(_png_source(np.ascontiguousarray(image)), global_batch_size=1,
                           scale=(0.5, 1.0), flip=False, resize_method="bilinear"), 1)
  assert batch["images"].shape == (1, 16, 16, 3)
  assert 78 <= batch["images"].min() and batch["images"].max() <= 82


@pytest.fixture(scope="module")
def plain(fake):
  """The first batch of the fake source with the default augmentations."""
  return _batches(_train(fake, global_batch_size=8), 1)[0]["images"]


def test_flip_toggle(fake, plain):
  unflipped = _batches(_train(fake, global_batch_size=8, flip=False), 1)[0]["images"]
  # Same seeds, so the same crops: each image is the same or its mirror.
  mirrored = [(p == u[:, ::-1]).all() and not (p == u).all()
              for p, u in zip(plain, unflipped)]
  same = [(p == u).all() for p, u in zip(plain, unflipped)]
  assert all(m or s for m, s in zip(mirrored, same)) and any(mirrored)


def test_scale_jitter_resizes_the_shorter_side_then_crops():
  """resize_shorter(32..32) > random_crop(16) of a 16x160 image whose columns hold their
  index: the image becomes 32x320, so a crop spans 16 columns of the resized image, 8 of
  the original, and the crop lies anywhere along the row."""
  image = np.broadcast_to(np.arange(160, dtype=np.uint8)[None, :, None], (16, 160, 3))
  ops = (op("decode"), op("resize_shorter", sides=(32, 32), method="bilinear"),
         op("random_crop", size=16))
  lefts = []
  for seed in range(6):
    batch, = _batches(_train(_png_source(np.ascontiguousarray(image)), global_batch_size=1,
                             ops=ops, seed=seed), 1)
    row = batch["images"][0, 8, :, 0].astype(int)
    assert batch["images"].shape == (1, 16, 16, 3)
    assert 6 <= row[-1] - row[0] <= 9  # 16 resized columns = 8 original ones
    lefts.append(row[0])
  assert len(set(lefts)) >= 4


def test_host_runs_only_host_ops(fake):
  for bad in (op("rand_augment", spec=RA_SPEC), op("color_jitter", strength=0.4),
              op("lighting", std=0.1)):
    with pytest.raises(DatasetError, match="does not run"):
      _train(fake, ops=(op("decode"), op("random_resized_crop", size=16, scale=(0.08, 1.0),
                                         ratio=(0.75, 1.33), method="bilinear"), bad))
  with pytest.raises(DatasetError, match="expected decode"):
    _train(fake, ops=(op("decode"), op("flip")))


def test_to_global_on_one_device():
  mesh = parallel.create_mesh(devices=jax.devices()[:1])
  local = [{"images": np.full((2, 4, 4, 3), i, np.uint8), "labels": np.arange(2) + i}
           for i in range(3)]
  out = list(host.to_global(iter(local), mesh, prefetch=2))
  assert len(out) == 3
  for i, batch in enumerate(out):
    assert isinstance(batch["images"], jax.Array)
    assert batch["images"].sharding == parallel.batch_sharding(mesh)
    np.testing.assert_array_equal(np.asarray(batch["labels"]), np.arange(2) + i)


def test_benchmark_cli(capsys, tmp_path):
  from tools import input_benchmark  # pylint: disable=g-import-not-at-top
  assert input_benchmark.main(["--image_size", "16", "--batch_size", "4", "--steps", "2",
                               "--warmup_steps", "1", "--log_every", "1",
                               "--fake_examples", "4"]) == 0
  out = capsys.readouterr().out
  assert "step 2/2" in out and "images/s per CPU core" in out and "cores" in out
  assert input_benchmark.main(["--dataset", "cifar10", "--data_dir", str(tmp_path)]) == 2
  err = capsys.readouterr().err
  assert err.startswith("error: TFDS dataset 'cifar10' is not prepared")
  assert err.count("\n") == 1 and "Traceback" not in err


def test_two_processes_each_read_their_share():
  """Two processes x two CPU devices: per-process input into global batches."""
  import socket  # pylint: disable=g-import-not-at-top
  from tests import test_train  # pylint: disable=g-import-not-at-top
  with socket.socket() as s:
    s.bind(("localhost", 0))
    port = s.getsockname()[1]
  procs = [subprocess.Popen(
      [sys.executable, "tests/multiprocess_host_check.py", str(port), str(i)],
      cwd=test_train.ROOT, env=test_train.cpu_env(2), stdout=subprocess.PIPE,
      stderr=subprocess.PIPE, text=True) for i in range(2)]
  outs = [p.communicate(timeout=300) for p in procs]
  for p, (out, err) in zip(procs, outs):
    assert p.returncode == 0 and "ok" in out, out[-2000:] + err[-3000:]
