"""train.py end to end: outputs, resume, multi-device equality and user-facing errors."""

import collections
import contextlib
import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

from kernels import onednn
from tools import compile_report

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# LeNet-1989 on digits in a few dozen steps.
DIGITS = ["--config", "configs/lenet1989.py", "--config.num_epochs=2",
          "--config.batch_size=32", "--config.log_every_steps=10",
          "--config.checkpoint_every_epochs=1", "--config.learning_rate=0.5"]
# A BatchNorm network, narrow, on synthetic 16x16 images; crop and flip augmentation.
# ResNet-8 (one block per stage): what these tests check does not depend on the depth,
# and it compiles in about half the time of ResNet-20 (test_parallel's run: 29 s against
# 42 s alone).
# lr 0.01: at 0.1 this tiny net is chaotic enough to amplify float round-off past 1e-5.
TINY_BN = ["--config", "configs/resnet20_cifar.py:tiny", "--config.num_epochs=1",
           "--config.model_kwargs.blocks_per_stage=1",
           "--config.log_every_steps=1", "--config.learning_rate=0.01"]


def cpu_env(devices: int) -> dict[str, str]:
  """``devices`` simulated CPU devices, with XLA:CPU's collective timeout (40 s, then it
  aborts the process) raised to 120 s for a busy 2-core machine. Past that a step's
  devices are not slow but deadlocked (as they were before ``parallel.DispatchLimit``):
  the abort names the collective, sooner than the tests' 300 s process timeouts would."""
  flags = (f"--xla_force_host_platform_device_count={devices} "
           "--xla_cpu_collective_call_terminate_timeout_seconds=120")
  return dict(os.environ, XLA_FLAGS=f"{os.environ.get('XLA_FLAGS', '')} {flags}",
              JAX_PLATFORMS="cpu", PYTHONUNBUFFERED="1")


# train.py, and then a check that TensorFlow was never imported: the GPU machines have
# none, so device-resident training must not need it (only the host pipeline imports it).
# Nor scikit-learn: the digits are read from its file (datasets._load_digits), as its
# import was a third of a short run.
_NO_TF = ("import sys, train; rc = train.main(sys.argv[1:]); "
          "assert 'tensorflow' not in sys.modules, 'tensorflow was imported'; "
          "assert 'sklearn' not in sys.modules, 'sklearn was imported'; sys.exit(rc)")


def run(args, workdir, devices=1, check=True, no_tensorflow=False):
  env = cpu_env(devices)
  entry = ["-c", _NO_TF] if no_tensorflow else ["train.py"]
  proc = subprocess.run([sys.executable, *entry, *args, "--workdir", str(workdir)],
                        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
  if check:
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
  return proc


def run_here(args, workdir, capsys, check=True):
  """``train.main`` in this process: what ``run`` checks, without a new interpreter's
  imports (jax, sklearn: seconds per run). Same return shape."""
  import train  # pylint: disable=g-import-not-at-top
  capsys.readouterr()
  argv = [*args, "--workdir", str(workdir)]
  rc = train.main(argv)
  out, err = capsys.readouterr()
  if check:
    assert rc == 0, out[-3000:] + err[-3000:]
  return subprocess.CompletedProcess(argv, rc, out, err)


@contextlib.contextmanager
def traces_of(*names):
  """How often each jitted function of ``names`` is traced inside the block, by name
  (tools/compile_report's listener of JAX's compile events; a trace happens for each new
  program, whatever the caches hold). Filled when the block ends."""
  programs = collections.Counter()
  listen = compile_report.listener(collections.Counter(), programs)
  counts = {}
  jax.monitoring.register_event_duration_secs_listener(listen)
  try:
    yield counts
  finally:
    jax.monitoring.unregister_event_duration_listener(listen)
    counts.update({n: programs[f"jaxpr_trace_duration|{n}_n"] for n in names})


def rows(workdir):
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    return [json.loads(line) for line in f]


def test_end_to_end_outputs_and_resume(tmp_path, capsys):
  full, split = tmp_path / "full", tmp_path / "split"
  proc = run(DIGITS, full, no_tensorflow=True)
  assert "final test accuracy" in proc.stdout
  assert "ETA" in proc.stdout and "img/s" in proc.stdout
  for name in ("config.json", "metrics.jsonl", "curves.png", "summary.json"):
    assert (full / name).exists(), name
  assert any(f.startswith("events") for f in os.listdir(full / "tensorboard"))
  steps = sorted(int(s) for s in os.listdir(full / "checkpoints") if s.isdigit())
  assert steps[-1] == 84  # 2 epochs of 1347 // 32 steps, final checkpoint
  r = rows(full)
  train = [x for x in r if "train_loss" in x]
  evals = [x for x in r if "eval_top1" in x]
  assert {"step", "epoch", "train_loss", "train_accuracy", "learning_rate",
          "images_per_sec"} <= set(train[0])
  assert {"eval_loss", "eval_top1", "eval_top5"} <= set(evals[0])
  assert len(evals) == 2 and evals[-1]["eval_count"] == 450
  assert evals[-1]["eval_top1"] > 0.5  # learning, not chance (0.1)

  # Interrupted after 50 steps (mid-epoch, inside a log interval, so the device loop is
  # cut at other places), then resumed with one compiled call per step instead of the
  # on-device loop: the same end as one uninterrupted run.
  with traces_of("train", "step") as traces:
    proc = run_here(DIGITS + ["--config.stop_after_steps=50"], split, capsys)
  assert "stopped after step 50/84" in proc.stdout
  # The device loop's intervals of 10, 2 (the epoch's end) and 8 steps run one program:
  # their length is an argument of it, not a constant (one compilation, not three).
  assert traces["train"] == 1
  # One evaluation (after epoch 1) of several batches: one program, its first call
  # included (its zeroed sums start where the later calls' come from).
  assert traces["step"] == 1
  proc = run_here(DIGITS + ["--config.device_loop=false"], split, capsys)
  assert "resumed from" in proc.stdout and "(step 50/84)" in proc.stdout
  a, b = rows(full), rows(split)
  assert [x["step"] for x in a] == [x["step"] for x in b]
  for x, y in zip(a, b):
    for k in ("train_loss", "train_accuracy", "eval_loss", "eval_top1"):
      # The row at step 52 averages 10 steps in one run but 2 in the resumed one.
      if k in x and not (x["step"] == 52 and k.startswith("train")):
        assert x[k] == pytest.approx(y[k], abs=1e-6), (x, y)
  sa = json.loads((full / "summary.json").read_text())
  sb = json.loads((split / "summary.json").read_text())
  assert sa["eval_top1"] == sb["eval_top1"] and sa["eval_loss"] == pytest.approx(sb["eval_loss"])

  # Running a finished workdir again changes nothing and keeps every checkpoint.
  before = sorted(os.listdir(split / "checkpoints"))
  proc = run_here(DIGITS, split, capsys)
  assert sorted(os.listdir(split / "checkpoints")) == before


@pytest.mark.parametrize("extra,message", [
    (["--config.model=lenet1990"], "unknown model 'lenet1990'"),
    (["--config.dataset=mnits"], "unknown dataset 'mnits'"),
    (["--config.nokey=1"], "unknown config key 'nokey'"),
    (["--config.num_epochs=two"], "config.num_epochs is an int"),
    (["--config.model_kwargs.widht=3"], "widht"),
    (["--config.dataset=npz:/no/such/file.npz"], "/no/such/file.npz"),
    (["--config.dataset=mnist", "--config.data_dir=/no/such/dir"], "/no/such/dir"),
    (["--config.weight_decay=nan"], "config.weight_decay=nan is not a finite number"),
    (["--config.learning_rate=inf"], "config.learning_rate=inf is not a finite number"),
    (["--config.model_kwargs.activation=foo"], "unknown LeNet1989 activation 'foo'"),
    (["--config", "configs/lenet1989.py:uspss"], "did you mean usps"),
    (["--config.freeze=h1/kernl"], "config.freeze: 'h1/kernl' names no parameter"),
    (["--config.data_init_images=100"], "model 'lenet1989' has no data-dependent init"),
    (["--config.data_init_images=100", "--config.dataset=mnist", "--config.model=airbench94",
      "--config.input_pipeline=host"], "data_init_images initialises the model from"),
    (["--config.input_pipeline=host"], "config.device_loop=True runs a log interval's"),
    (["--config.conv_backend=mkl"], "config.conv_backend='mkl' is not one of xla, onednn"),
    (["--config.conv_backend=onednn", "--config.dtype=bfloat16"],
     "config.conv_backend='onednn' runs float32 convolutions, and dtype=bfloat16"),
])
def test_bad_input_is_one_line(tmp_path, capsys, extra, message):
  # In this process; the exit status through train.py's entry point:
  # test_batch_size_must_divide_devices.
  proc = run_here(DIGITS + extra, tmp_path / "w", capsys, check=False)
  assert proc.returncode == 2, proc.stderr[-2000:]
  err = proc.stderr.strip().splitlines()
  assert err[-1].startswith("error: ") and message in err[-1], proc.stderr[-2000:]
  assert "Traceback" not in proc.stderr
  # A run that never started leaves no (empty) --workdir behind.
  assert not (tmp_path / "w").exists()


def test_bad_config_files_and_workdirs_are_one_line(tmp_path, capsys):
  import train  # pylint: disable=g-import-not-at-top
  (tmp_path / "syntax.py").write_text("def get_config(:\n")
  (tmp_path / "imports.py").write_text("import no_such_module\n")
  (tmp_path / "a_file").write_text("")
  cases = [
      (["--config", str(tmp_path / "syntax.py"), "--workdir", str(tmp_path / "w")],
       "cannot be loaded: SyntaxError"),
      (["--config", str(tmp_path / "imports.py"), "--workdir", str(tmp_path / "w")],
       "cannot be loaded: ModuleNotFoundError"),
      (DIGITS + ["--workdir", str(tmp_path / "a_file")], "is a file, not a directory"),
      (DIGITS + ["--workdir="], "--workdir is empty"),
  ]
  for argv, message in cases:
    assert train.main(argv) == 2, argv
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and message in err[0], err


def test_batch_size_must_divide_devices(tmp_path):
  proc = run(TINY_BN + ["--config.batch_size=12"], tmp_path / "w", devices=8, check=False)
  assert proc.returncode == 2
  assert "batch_size=12 does not divide over 8 devices" in proc.stderr


def test_nan_loss_stops_and_keeps_checkpoints(tmp_path, capsys):
  w = tmp_path / "w"
  run_here(DIGITS + ["--config.num_epochs=1"], w, capsys)
  # Continue the same workdir for more epochs at an absurd learning rate.
  proc = run_here(DIGITS + ["--config.num_epochs=3", "--config.learning_rate=1e30",
                            "--config.loss=cross_entropy",
                            "--config.model_kwargs.activation=relu",
                            "--config.model_kwargs.output_activation=None",
                            "--config.allow_config_change=true"], w, capsys, check=False)
  assert proc.returncode == 2, proc.stdout[-2000:] + proc.stderr[-2000:]
  assert "training loss is nan" in proc.stderr and "step 42" in proc.stderr
  assert sorted(int(s) for s in os.listdir(w / "checkpoints") if s.isdigit()) == [42]


def test_corrupt_checkpoint_is_reported_and_kept(tmp_path, capsys):
  w = tmp_path / "w"
  run_here(DIGITS + ["--config.num_epochs=1"], w, capsys)
  ckpt = w / "checkpoints" / "42"
  for root, _, files in os.walk(ckpt):
    for f in files:
      with open(os.path.join(root, f), "wb") as fh:
        fh.write(b"garbage")
  proc = run_here(DIGITS + ["--config.num_epochs=1"], w, capsys, check=False)
  assert proc.returncode == 2
  assert "cannot restore the checkpoint" in proc.stderr and str(ckpt) in proc.stderr
  assert ckpt.exists() and any(files for _, _, files in os.walk(ckpt))


def test_sigterm_saves_a_checkpoint_and_resumes(tmp_path):
  """scancel, Kubernetes and preemption send SIGTERM: the run saves, as on Ctrl-C."""
  w = tmp_path / "w"
  proc = subprocess.Popen([sys.executable, "train.py", *DIGITS, "--config.num_epochs=50",
                           "--workdir", str(w)], cwd=ROOT, env=cpu_env(1),
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
  for line in proc.stdout:  # wait until it trains
    if line.startswith("[train]"):
      break
  proc.terminate()
  out, err = proc.communicate(timeout=120)
  assert proc.returncode == 143, err[-2000:]  # 128 + SIGTERM, as schedulers expect
  assert "checkpoint saved" in out and "(SIGTERM)" in out
  saved = [int(s) for s in os.listdir(w / "checkpoints") if s.isdigit()]
  assert len(saved) == 1 and 0 < saved[0] < 50 * 42


def test_convnext_recipe_end_to_end_evaluates_raw_and_ema_weights(tmp_path, capsys):
  """The whole ConvNeXt recipe on device-resident data (random-resized crops, RandAugment
  with one layer to compile faster, Mixup / CutMix, erasing, EMA): both weights
  evaluated, and both learn: their test loss falls from the first epoch to the second.
  (Accumulation: tests/test_steps.py.)"""
  proc = run_here(["--config", "configs/convnext_t.py:tiny", "--config.num_epochs=2",
                   "--config.augment.rand_augment=rand-m9-n1-mstd0.5-inc1",
                   "--config.log_every_steps=4"], tmp_path / "w", capsys)
  assert "EMA top-1" in proc.stdout and "peak learning rate 0.001" in proc.stdout
  summary = json.loads((tmp_path / "w" / "summary.json").read_text())
  assert 0 <= summary["ema_eval_top1"] <= 1 and 0 <= summary["eval_top1"] <= 1
  assert summary["ema_eval_loss"] != summary["eval_loss"]  # two sets of weights
  first, last = [r for r in rows(tmp_path / "w") if "eval_loss" in r]
  assert (last["step"], last["eval_loss"]) == (summary["step"], summary["eval_loss"])
  assert last["eval_loss"] < first["eval_loss"], (first, last)
  assert last["ema_eval_loss"] < first["ema_eval_loss"], (first, last)


def test_host_pipeline_end_to_end(tmp_path, capsys):
  """A prepared TFDS dataset of JPEGs of varying size goes through the host pipeline
  (auto: its images vary in size): decode, random-resized crop on the host; RandAugment,
  erasing, Mixup / CutMix and EMA in the step; exact evaluation. The plan is printed and
  written to recipe.json. (A real dataset on disk, not tfds.testing.mock_data, whose
  file-system mock also catches some of orbax's checkpoint writes.)"""
  pytest.importorskip("tensorflow_datasets")
  import train  # pylint: disable=g-import-not-at-top
  workdir = tmp_path / "w"
  rc = train.main(["--config", "configs/convnext_t.py:tiny", "--workdir", str(workdir),
                   *_jpeg_dataset_args(tmp_path),
                   "--config.image_size=32", "--config.batch_size=4",
                   "--config.eval_batch_size=4", "--config.num_epochs=1",
                   "--config.host.shuffle_buffer=8",
                   "--config.augment.rand_augment=rand-m9-n1-mstd0.5-inc1"])
  out = capsys.readouterr().out
  assert rc == 0, out
  assert "host pipeline" in out and "4 classes" in out
  assert ("train augmentation: host: decode > random_resized_crop(32, 0.08,1, 0.75,1.333, "
          "bicubic) | device: rand_augment(rand-m9-n1-mstd0.5-inc1) > random_erasing") in out
  plan = json.loads((workdir / "recipe.json").read_text())
  assert [o["op"] for o in plan["train"]["host"]] == ["decode", "random_resized_crop"]
  assert plan["recipe"]["rand_augment"] == "rand-m9-n1-mstd0.5-inc1"
  assert plan["source"] == "host" and plan["processes"] == 1
  summary = json.loads((workdir / "summary.json").read_text())
  assert summary["step"] == 3 and summary["num_classes"] == 4  # 12 // 4 steps
  assert summary["image_shape"] == [32, 32, 3] and "ema_eval_top1" in summary
  evals = [r for r in rows(workdir) if "eval_count" in r]
  assert evals[-1]["eval_count"] == 4  # every validation example exactly once


def test_a_device_loop_on_a_dataset_the_data_send_to_the_host_is_an_error(tmp_path, capsys):
  """A TFDS dataset the config's table does not know is placed by its data (images of
  varying size: the host pipeline), after the config check: the host pipeline says that
  it cannot run the config's device_loop, instead of running one step per call."""
  pytest.importorskip("tensorflow_datasets")
  import train  # pylint: disable=g-import-not-at-top
  data = _jpeg_dataset_args(tmp_path)
  capsys.readouterr()  # TFDS's progress bars while preparing it
  rc = train.main(["--config", "configs/convnext_t.py:tiny", "--workdir", str(tmp_path / "w"),
                   *data, "--config.image_size=32", "--config.device_loop=true"])
  err = capsys.readouterr().err.strip().splitlines()
  assert rc == 2 and len(err) == 1, err
  assert err[0].startswith("error: config.device_loop=True runs a log interval's steps")
  assert "the host pipeline streams" in err[0]
  assert not (tmp_path / "w").exists()


def test_imagenet_not_prepared_says_how_to_prepare_it(tmp_path, capsys):
  pytest.importorskip("tensorflow_datasets")
  import train  # pylint: disable=g-import-not-at-top
  empty = tmp_path / "tfds"
  empty.mkdir()
  rc = train.main(["--config", "configs/convnext_t.py", f"--config.data_dir={empty}",
                   "--config.download=false", "--workdir", str(tmp_path / "w")])
  err = capsys.readouterr().err.strip().splitlines()
  assert rc == 2 and err, err
  assert err[-1].startswith("error: ") and "imagenet2012" in err[-1], err[-1]
  assert "tools/prepare_data.py imagenet2012" in err[-1] and "manual" in err[-1], err[-1]


def test_alexnet_protocol_on_the_host_with_ten_crop_evaluation(tmp_path, capsys):
  """AlexNet's protocol streamed: resize-shorter and random crops on the host, PCA
  lighting on the device; the host ships the resized square, the device takes ten
  views; every validation image counts once."""
  pytest.importorskip("tensorflow_datasets")
  import train  # pylint: disable=g-import-not-at-top
  workdir = tmp_path / "w"
  rc = train.main(["--config", "configs/alexnet.py:tiny", "--workdir", str(workdir),
                   *_jpeg_dataset_args(tmp_path),
                   "--config.image_size=63", "--config.augment.eval_mode=ten_crop",
                   "--config.augment.flip=true", "--config.batch_size=4",
                   "--config.eval_batch_size=4", "--config.num_epochs=1"])
  out = capsys.readouterr().out
  assert rc == 0, out
  assert ("train augmentation: host: decode > resize_shorter(72, bilinear) > "
          "random_crop(63) > flip | device: lighting(0.1) > normalize") in out
  assert ("eval: host: decode > resize_shorter(72, bilinear) > center_crop(72) | device: "
          "ten_crop(63) > normalize") in out
  evals = [r for r in rows(workdir) if "eval_count" in r]
  assert evals[-1]["eval_count"] == 4


_RESUME_BUILDER = []


def _prepared_jpegs(data_dir):
  """A registered TFDS dataset of 12 train and 4 validation JPEGs of varying size,
  prepared in ``data_dir`` (a real one: checkpoints are written outside any mock)."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  if not _RESUME_BUILDER:
    class HostResumeJpeg(tfds.core.GeneratorBasedBuilder):  # registered: train.py finds it
      VERSION = tfds.core.Version("1.0.0")

      def _info(self):
        return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict({
            "image": tfds.features.Image(shape=(None, None, 3), encoding_format="jpeg"),
            "label": tfds.features.ClassLabel(num_classes=4)}))

      def _split_generators(self, dl_manager):
        del dl_manager
        return {"train": self._generate_examples(0, 12),
                "validation": self._generate_examples(12, 4)}

      def _generate_examples(self, start, n):
        rng = np.random.default_rng(start)
        for i in range(start, start + n):
          shape = (int(rng.integers(36, 60)), int(rng.integers(36, 60)), 3)
          yield i, {"image": rng.integers(0, 256, shape, dtype=np.uint8), "label": i % 4}

    _RESUME_BUILDER.append(HostResumeJpeg)
  builder = _RESUME_BUILDER[0](data_dir=str(data_dir))
  builder.download_and_prepare(download_config=tfds.download.DownloadConfig(
      compute_stats=tfds.download.ComputeStatsMode.SKIP))
  return builder.name


def _jpeg_dataset_args(tmp_path) -> list[str]:
  """The flags that train on ``_prepared_jpegs``, prepared under ``tmp_path/tfds``."""
  name = _prepared_jpegs(tmp_path / "tfds")
  return [f"--config.dataset={name}", f"--config.data_dir={tmp_path / 'tfds'}",
          "--config.download=false"]


def test_host_pipeline_resumes_with_exactly_the_next_batches(tmp_path, capsys):
  """A host-pipeline run stopped mid-epoch and resumed ends bitwise where an uninterrupted
  run ends: the stream's order is a function of (seed, epoch), not of the resume step."""
  pytest.importorskip("tensorflow_datasets")
  import jax  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  import orbax.checkpoint as ocp  # pylint: disable=g-import-not-at-top
  import train  # pylint: disable=g-import-not-at-top
  # ResNet-18: the recipe is resnet50.py's; the shallower net compiles in half the time.
  args = ["--config", "configs/resnet50.py:depth=18,tiny", *_jpeg_dataset_args(tmp_path),
          "--config.image_size=32",
          "--config.batch_size=4", "--config.eval_batch_size=4", "--config.num_epochs=2",
          "--config.host.shuffle_buffer=4", "--config.augment.flip=true"]
  full, split = tmp_path / "full", tmp_path / "split"
  assert train.main(args + ["--workdir", str(full)]) == 0
  assert train.main(args + ["--workdir", str(split), "--config.stop_after_steps=4"]) == 0
  assert train.main(args + ["--workdir", str(split)]) == 0
  out = capsys.readouterr().out
  assert "host pipeline" in out and "random_resized_crop(32" in out
  assert "stopped after step 4/6" in out and "(step 4/6)" in out
  restore = lambda w: ocp.StandardCheckpointer().restore(
      str(w / "checkpoints" / "6" / "default"))
  a, b = jax.tree.leaves(restore(full)), jax.tree.leaves(restore(split))
  assert len(a) == len(b) > 0
  for x, y in zip(a, b):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
  assert rows(full)[-1]["eval_loss"] == rows(split)[-1]["eval_loss"]


def test_a_workdir_belongs_to_one_experiment(tmp_path, capsys):
  """Resuming with another experiment's config is refused, naming the fields, and leaves
  the run's record and checkpoints alone; allow_config_change continues it and records
  the change; logging and checkpoint cadence are not the experiment."""
  import train  # pylint: disable=g-import-not-at-top
  w = tmp_path / "w"
  args = DIGITS + ["--config.num_epochs=1", "--workdir", str(w)]
  assert train.main(args) == 0
  record = (w / "config.json").read_text()
  steps = sorted(os.listdir(w / "checkpoints"))
  capsys.readouterr()
  for extra, named in ((["--config.batch_size=64"], "batch_size 32 -> 64"),
                       (["--config.dataset=synthetic"], 'dataset "digits" -> "synthetic"'),
                       (["--config.augment.crop_padding=1"], "augment.crop_padding 0 -> 1")):
    assert train.main(args + extra) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and named in err[0] and "allow_config_change" in err[0], err
  assert (w / "config.json").read_text() == record
  assert sorted(os.listdir(w / "checkpoints")) == steps
  assert train.main(args + ["--config.log_every_steps=7"]) == 0  # cadence: same run
  assert train.main(args + ["--config.num_epochs=2", "--config.allow_config_change=true"]) == 0
  out = capsys.readouterr().out
  assert "changed config" in out and "num_epochs 1 -> 2" in out
  change, = [json.loads(line) for line in (w / "config_changes.jsonl").read_text().splitlines()]
  assert change["changes"] == [{"field": "num_epochs", "was": 1, "now": 2}]
  assert json.loads((w / "config.json").read_text())["num_epochs"] == 2
  assert json.loads((w / "summary.json").read_text())["step"] == 2 * 1347 // 32


def test_checkpoints_every_few_minutes_at_log_points(tmp_path, capsys):
  """checkpoint_every_minutes saves at the first log point after the interval (here a
  few milliseconds: every log point), beside the epoch cadence (here: never)."""
  import train  # pylint: disable=g-import-not-at-top
  w = tmp_path / "w"
  assert train.main(DIGITS + ["--workdir", str(w), "--config.checkpoint_every_epochs=100",
                              "--config.checkpoint_every_minutes=0.0001",
                              "--config.keep_checkpoints=100"]) == 0
  steps = sorted(int(s) for s in os.listdir(w / "checkpoints") if s.isdigit())
  # Log points every 10 steps of each epoch and at the epoch ends (42, 84).
  assert steps == [10, 20, 30, 40, 42, 52, 62, 72, 82, 84], steps
  capsys.readouterr()


def test_two_crops_are_refused_before_anything_compiles(tmp_path, capsys):
  proc = run_here(DIGITS + ["--config.augment.crop_padding=16",
                            "--config.augment.inception_crop=true"], tmp_path / "w", capsys,
                  check=False)
  assert proc.returncode == 2 and "Traceback" not in proc.stderr
  err = proc.stderr.strip().splitlines()
  assert len(err) == 1 and "two crops" in err[0] and "crop_padding=16" in err[0], err
  assert not (tmp_path / "w" / "checkpoints").exists()


def test_corrupt_latest_checkpoint_is_set_aside_and_the_run_resumes_from_the_previous(
    tmp_path, capsys):
  """Issue 14, checkpoints that heal: the latest checkpoint (63, of a run stopped early)
  is garbled; the resumed run warns once, moves it to ``checkpoints/corrupt-63`` (nothing
  deleted), resumes from 42 and ends exactly where an uninterrupted run ends."""
  import jax  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  import orbax.checkpoint as ocp  # pylint: disable=g-import-not-at-top
  full, split = tmp_path / "full", tmp_path / "split"
  run_here(DIGITS, full, capsys)
  run_here(DIGITS + ["--config.stop_after_steps=63"], split, capsys)
  ckpts = split / "checkpoints"
  assert sorted(os.listdir(ckpts)) == ["42", "63"]
  for root, _, files in os.walk(ckpts / "63"):
    for f in files:
      with open(os.path.join(root, f), "wb") as fh:
        fh.write(b"garbage")
  garbled = sorted(os.path.relpath(os.path.join(r, f), ckpts / "63")
                   for r, _, fs in os.walk(ckpts / "63") for f in fs)
  proc = run(DIGITS, split)
  err = [line for line in proc.stderr.splitlines() if line.strip()]
  assert len(err) == 1, proc.stderr[-3000:]
  assert err[0].startswith("warning: the checkpoint of step 63 cannot be restored (")
  assert str(ckpts / "corrupt-63") in err[0] and "resumed from step 42" in err[0]
  assert f"resumed from {ckpts}/42 (step 42/84)" in proc.stdout
  assert sorted(os.listdir(ckpts)) == ["42", "84", "corrupt-63"]
  assert sorted(os.path.relpath(os.path.join(r, f), ckpts / "corrupt-63")
                for r, _, fs in os.walk(ckpts / "corrupt-63") for f in fs) == garbled
  # The same end as one uninterrupted run: metrics and every array, bit for bit.
  sa = json.loads((full / "summary.json").read_text())
  sb = json.loads((split / "summary.json").read_text())
  assert (sa["eval_loss"], sa["eval_top1"]) == (sb["eval_loss"], sb["eval_top1"])
  evals = lambda w: [(r["step"], r["eval_loss"], r["eval_top1"]) for r in rows(w)
                     if "eval_loss" in r]
  assert evals(full) == evals(split)
  a, b = (ocp.StandardCheckpointer().restore(str(w / "checkpoints" / "84" / "default"))
          for w in (full, split))
  flat_a, flat_b = (dict(jax.tree_util.tree_leaves_with_path(x)) for x in (a, b))
  assert flat_a.keys() == flat_b.keys()
  for k in flat_a:
    assert np.array_equal(flat_a[k], flat_b[k]), jax.tree_util.keystr(k)


def _start_two_processes(args, workdir, logs):
  """train.py as 2 processes x 1 CPU device (jax.distributed on localhost); each one's
  stdout and stderr go to ``logs``.{0,1}.out/.err (files: a full pipe would block it)."""
  import socket  # pylint: disable=g-import-not-at-top
  with socket.socket() as s:
    s.bind(("localhost", 0))
    port = s.getsockname()[1]
  procs = []
  for i in range(2):
    with open(f"{logs}.{i}.out", "w") as out, open(f"{logs}.{i}.err", "w") as err:
      procs.append(subprocess.Popen(
          [sys.executable, "train.py", *args, "--workdir", str(workdir),
           "--coordinator_address", f"localhost:{port}", "--num_processes", "2",
           "--process_id", str(i)], cwd=ROOT, env=cpu_env(1), stdout=out, stderr=err))
  return procs


def _wait_two_processes(procs, logs, timeout=300):
  """Waits for both; returns ``[(returncode, stdout)]`` (stderr's tail on a timeout)."""
  import time  # pylint: disable=g-import-not-at-top
  deadline = time.time() + timeout
  for p in procs:
    try:
      p.wait(timeout=max(1, deadline - time.time()))
    except subprocess.TimeoutExpired:
      for q in procs:
        q.kill()
      pytest.fail("hung: " + " | ".join(open(f"{logs}.{i}.err").read()[-1500:]
                                        for i in range(2)))
  return [(p.returncode, open(f"{logs}.{i}.out").read()) for i, p in enumerate(procs)]


def test_sigterm_to_one_of_two_processes_stops_both_at_one_step(tmp_path):
  """A preemption notice (SIGTERM) that reaches one process of two: both stop after the
  same step (they agree at log points), save one checkpoint together and exit 143; the
  same command resumes it to the end, bitwise where an uninterrupted run ends. That run is
  one process with two devices: the same program on the same 2-device data mesh, whose
  gradient all-reduce adds two numbers (exact in any order), so the comparison is bitwise
  (test_parallel's 1-device reference needs a tolerance; this one does not)."""
  import re  # pylint: disable=g-import-not-at-top
  import signal  # pylint: disable=g-import-not-at-top
  import time  # pylint: disable=g-import-not-at-top
  import jax  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  import orbax.checkpoint as ocp  # pylint: disable=g-import-not-at-top
  args = DIGITS + ["--config.num_epochs=3", "--config.checkpoint_every_epochs=100",
                   "--config.eval_every_epochs=100"]
  total = 3 * (1347 // 32)
  w, logs = tmp_path / "w", tmp_path / "stop"
  procs = _start_two_processes(args, w, logs)
  deadline = time.time() + 240
  while "[train]" not in open(f"{logs}.0.out").read():  # process 0 trains: so does 1
    assert time.time() < deadline and all(p.poll() is None for p in procs), \
        open(f"{logs}.0.err").read()[-3000:] + open(f"{logs}.1.err").read()[-3000:]
    time.sleep(0.05)
  procs[1].send_signal(signal.SIGTERM)
  done = _wait_two_processes(procs, logs)
  stops = []
  for i, (rc, out) in enumerate(done):
    assert rc == 143, (rc, out[-2000:], open(f"{logs}.{i}.err").read()[-3000:])
    stops += re.findall(rf"process {i} of 2: interrupted at step (\d+) \(SIGTERM\); "
                        "checkpoint saved", out)
  assert len(stops) == 2 and stops[0] == stops[1], stops  # the same step on both
  step = int(stops[0])
  assert 0 < step < total
  assert sorted(os.listdir(w / "checkpoints")) == [str(step)]  # one, written together

  done = _wait_two_processes(_start_two_processes(args, w, tmp_path / "resume"),
                             tmp_path / "resume")
  assert [rc for rc, _ in done] == [0, 0], done[0][1][-2000:]
  assert f"(step {step}/{total})" in done[0][1] and "final test accuracy" in done[0][1]
  full = tmp_path / "full"
  run(args, full, devices=2)

  def restore(workdir):  # onto this process's one device, whatever the saving topology
    path = str(workdir / "checkpoints" / str(total) / "default")
    ckpt = ocp.StandardCheckpointer()
    meta = ckpt.metadata(path)
    meta = getattr(meta, "item_metadata", meta)
    one = jax.sharding.SingleDeviceSharding(jax.devices()[0])
    return jax.tree.leaves(ckpt.restore(path, jax.tree.map(
        lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=one), meta)))
  a, b = restore(full), restore(w)
  assert len(a) == len(b) > 0
  for x, y in zip(a, b):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
  sa, sb = (json.loads((d / "summary.json").read_text()) for d in (full, w))
  assert (sa["eval_loss"], sa["eval_top1"]) == (sb["eval_loss"], sb["eval_top1"])


def test_profile_steps_write_a_trace_of_those_steps(tmp_path, capsys):
  import train  # pylint: disable=g-import-not-at-top
  workdir = tmp_path / "w"
  args = ["--config", "configs/lenet5.py:tiny", "--workdir", str(workdir),
          "--config.profile_steps=1,3"]
  assert train.main(args) == 0
  assert f"trace written to {workdir / 'profile'}" in capsys.readouterr().out
  traces = [f for _, _, files in os.walk(workdir / "profile") for f in files
            if f.endswith(".xplane.pb")]
  assert len(traces) == 1
  for bad, message in (("3,1", "must be two step numbers a < b"),
                       ("2,99", "ends past the run's last step (4)")):
    bad_workdir = tmp_path / bad.replace(",", "_")
    assert train.main(args[:-1] + ["--workdir", str(bad_workdir),
                                   f"--config.profile_steps={bad}"]) == 2
    assert message in capsys.readouterr().err
    assert not bad_workdir.exists()  # asked before the workdir is made


def test_compilation_cache_directory_and_switch(tmp_path, monkeypatch):
  import jax  # pylint: disable=g-import-not-at-top
  import train  # pylint: disable=g-import-not-at-top
  from training import config as config_lib  # pylint: disable=g-import-not-at-top
  before = (jax.config.jax_enable_compilation_cache, jax.config.jax_compilation_cache_dir,
            jax.config.jax_persistent_cache_min_compile_time_secs)
  try:
    monkeypatch.delenv("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", raising=False)
    assert train.use_compilation_cache(str(tmp_path / "c")) == str(tmp_path / "c")
    assert jax.config.jax_compilation_cache_dir == str(tmp_path / "c")
    assert os.path.isdir(tmp_path / "c")
    assert jax.config.jax_persistent_cache_min_compile_time_secs == 0  # every program
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
    monkeypatch.setenv("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.5")
    train.use_compilation_cache(str(tmp_path / "c"))
    assert jax.config.jax_persistent_cache_min_compile_time_secs == 0.5  # JAX's own switch
    monkeypatch.setenv("JAX_COMPILATION_CACHE_DIR", str(tmp_path / "env"))
    assert train.use_compilation_cache(None) == str(tmp_path / "env")
    assert train.use_compilation_cache("off") is None
    assert not jax.config.jax_enable_compilation_cache
    (tmp_path / "file").write_text("")
    with pytest.raises(config_lib.ConfigError, match="--compilation_cache .*file"):
      train.use_compilation_cache(str(tmp_path / "file"))
  finally:
    jax.config.update("jax_enable_compilation_cache", before[0])
    jax.config.update("jax_compilation_cache_dir", before[1])
    jax.config.update("jax_persistent_cache_min_compile_time_secs", before[2])


def test_the_seed_is_an_argument_of_the_compiled_step_not_a_constant_in_it():
  """Two seeds, one program (so the compilation cache serves a sweep's second seed), and
  still two different random streams."""
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  import train  # pylint: disable=g-import-not-at-top
  from training import parallel  # pylint: disable=g-import-not-at-top
  mesh = parallel.create_mesh(1)
  make = lambda key: (lambda x, n: x + jax.random.normal(key, (n,)))
  fns = [train.jit_with_key("noisy", make, jax.random.key(seed), mesh, static_argnums=(1,))
         for seed in (0, 1)]
  x = jnp.zeros(3)
  texts = [f.func.lower(*f.args, x, 3).as_text() for f in fns]
  assert texts[0] == texts[1] and "noisy" in texts[0]
  assert not jnp.allclose(fns[0](x, 3), fns[1](x, 3))
  # A key closed over instead is a constant: the programs differ.
  closed = [jax.jit(make(jax.random.key(seed)), static_argnums=(1,)) for seed in (0, 1)]
  assert closed[0].lower(x, 3).as_text() != closed[1].lower(x, 3).as_text()


def test_data_warnings_name_mirror_images_of_digits():
  import train  # pylint: disable=g-import-not-at-top
  from configs import lenet1989  # pylint: disable=g-import-not-at-top
  from training import data as data_lib  # pylint: disable=g-import-not-at-top
  info = lambda flip: data_lib.DataInfo(name="usps", image_shape=(16, 16, 1), num_classes=10,
                                        num_train=8, num_test=8, flip=flip, mean=None, std=None)
  c = lenet1989.get_config()
  assert train.data_warnings(c, info(False)) == []  # the paper's protocol
  c.augment.flip, c.augment.eval_mode = True, "flip_translate"
  flips, views = train.data_warnings(c, info(False))
  assert flips == "horizontal flips do not preserve the labels of usps"
  assert views.startswith("eval_mode=flip_translate averages mirror images") and "translate" in views
  c.augment.flip, c.augment.eval_mode = False, "translate"  # shifted views are fine
  assert train.data_warnings(c, info(False)) == []
  c.augment.flip, c.augment.eval_mode = True, "ten_crop"
  assert train.data_warnings(c, info(True)) == []  # a mirror image keeps these labels


def test_data_init_and_freeze_keep_airbenchs_whitening_filters(tmp_path, capsys):
  import numpy as np  # pylint: disable=g-import-not-at-top
  from models import airbench  # pylint: disable=g-import-not-at-top
  from tools import evaluate  # pylint: disable=g-import-not-at-top
  w = tmp_path / "w"
  proc = run_here(["--config", "configs/speedrun_fashion_mnist.py:tiny",
                   "--config.data_init_images=64",
                   "--config.freeze=whiten/kernel,whiten/bias:1",
                   "--config.checkpoint_every_epochs=1"], w, capsys)
  assert "data init: airbench94's init_whitening from the first 64 training images" in proc.stdout
  config, ds, _, variables = evaluate.load_run(str(w))  # after 2 epochs (4 steps each)
  raw = evaluate.load_run(str(w), step=4)[3]  # after the first
  x = ds.train_images[:64].astype(np.float32) / 255
  x = (x - np.float32(ds.mean)) / np.float32(ds.std)  # config.normalization="dataset"
  filters = airbench.whitening_filters(x, 2)
  for v in (variables, raw):
    np.testing.assert_allclose(v["params"]["whiten"]["kernel"], filters, rtol=1e-6)
  bias = raw["params"]["whiten"]["bias"]
  assert np.abs(bias).max() > 0  # trained in the first epoch (it starts at 0) ...
  np.testing.assert_array_equal(variables["params"]["whiten"]["bias"], bias)  # ... not after
  assert not np.array_equal(variables["params"]["head"]["kernel"], raw["params"]["head"]["kernel"])
  assert config.data_init_images == 64


@pytest.mark.skipif(not onednn.installed(), reason="oneDNN's packages or g++ are missing")
def test_onednn_convolutions_train_as_xla_does(tmp_path, capsys):
  """config.conv_backend='onednn': the same run step by step (the losses of a BatchNorm
  network, whose gradients pass through every convolution's three directions, equal at
  float32 rounding), and the log says which library ran the convolutions."""
  xla = run_here(TINY_BN, tmp_path / "xla", capsys)
  ours = run_here(TINY_BN + ["--config.conv_backend=onednn"], tmp_path / "onednn", capsys)
  assert "convolutions by oneDNN" in ours.stdout and "oneDNN" not in xla.stdout
  want, got = rows(tmp_path / "xla"), rows(tmp_path / "onednn")
  assert [r["step"] for r in got] == [r["step"] for r in want] and len(want) >= 8
  np.testing.assert_allclose([r["train_loss"] for r in got if "train_loss" in r],
                             [r["train_loss"] for r in want if "train_loss" in r], rtol=2e-5)
  assert got[-1]["eval_loss"] == pytest.approx(want[-1]["eval_loss"], rel=2e-5)
