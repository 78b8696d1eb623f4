"""launch/sweep.py and launch/collect.py: expansion, names, each runner's commands,
resuming, validation errors, the collector on fake runs, and one real 2-run sweep."""

from __future__ import annotations

import glob
import json
import os
import stat

import numpy as np
import pytest

from launch import collect, sweep
from training import rundir
from training import config as config_lib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = "configs/lecun1989_nets.py:tiny"  # synthetic 16x16 data: no files needed


@pytest.fixture(autouse=True)
def _in_root(monkeypatch):
  monkeypatch.chdir(ROOT)  # config paths and train.py are relative to the repository
  monkeypatch.setenv("JAX_PLATFORMS", "cpu")


def plan(*argv: str) -> list[sweep.Run]:
  return sweep.plan(*sweep.parse_args(list(argv)))


def main(capsys, *argv: str) -> tuple[int, str, str]:
  rc = sweep.main(list(argv))
  out = capsys.readouterr()
  return rc, out.out, out.err


# ---------------------------------------------------------------------------- expansion


def test_grid_is_a_cartesian_product_with_bracketed_values():
  grid = sweep.parse_grid(["config.seed=0,1,2", "decay_epochs=(5,),(5,10)"])
  assert grid == {"seed": ["0", "1", "2"], "decay_epochs": ["(5,)", "(5,10)"]}
  pairs = sweep.expand([], grid)
  assert len(pairs) == 6
  assert [p for _, p in pairs][:2] == [{"seed": "0", "decay_epochs": "(5,)"},
                                       {"seed": "0", "decay_epochs": "(5,10)"}]
  runs = plan("--config", "configs/lenet1989.py", "--sweep_dir", "s",
              "--grid", "learning_rate=0.1,0.3", "--grid", "seed=0,1", "--config.num_epochs=2")
  assert [r.name for r in runs] == ["learning_rate=0.1,seed=0", "learning_rate=0.1,seed=1",
                                    "learning_rate=0.3,seed=0", "learning_rate=0.3,seed=1"]
  assert runs[3].overrides == {"learning_rate": "0.3", "seed": "1", "num_epochs": "2"}
  assert runs[3].workdir == os.path.join("s", "learning_rate=0.3,seed=1")


def test_config_sweep_crossed_with_grid():
  runs = plan("--config", TINY, "--sweep_dir", "s")
  assert len(runs) == 15 and runs[0].name == "net1_seed0" and runs[-1].name == "net5_seed2"
  assert runs[4].overrides == {"model": "lecun1989_net2", "seed": "1"}
  assert len(plan("--config", TINY + ",seeds=2", "--sweep_dir", "s")) == 10
  runs = plan("--config", TINY, "--sweep_dir", "s", "--grid", "learning_rate=0.01,0.1")
  assert len(runs) == 30 and len({r.workdir for r in runs}) == 30
  assert runs[1].name == "net1_seed0,learning_rate=0.1"
  # --no_config_sweep: the grid alone.
  runs = plan("--config", TINY, "--sweep_dir", "s", "--grid", "seed=0,1", "--no_config_sweep")
  assert [r.name for r in runs] == ["seed=0", "seed=1"]


def test_explicit_lists_replace_the_config_sweep(tmp_path):
  runs = plan("--config", TINY, "--sweep_dir", "s", "--run", "model=lecun1989_net1 name=base",
              "--run", "model=lecun1989_net3 learning_rate=0.1")
  assert [r.name for r in runs] == ["base", "model=lecun1989_net3,learning_rate=0.1"]
  assert runs[0].overrides == {"model": "lecun1989_net1"}
  (tmp_path / "s.json").write_text(json.dumps(
      [{"model": "lecun1989_net2", "decay_epochs": [3, 4]}, {"config.model": "lecun1989_net4"}]))
  runs = plan("--config", TINY, "--sweep_dir", "s", "--sweep", str(tmp_path / "s.json"),
              "--grid", "seed=0,1")
  assert len(runs) == 4
  assert runs[0].overrides == {"model": "lecun1989_net2", "decay_epochs": "(3,4)", "seed": "0"}
  (tmp_path / "s.py").write_text(
      "def get_sweep():\n  return [{'name': 'a', 'learning_rate': 0.1}, {'name': 'a', "
      "'learning_rate': 1e-5, 'augment.flip': False, 'image_size': None}]\n")
  runs = plan("--config", TINY, "--sweep_dir", "s", "--sweep", str(tmp_path / "s.py"))
  assert [r.name for r in runs] == ["a", "a-2"]  # repeated names are made unique
  assert runs[1].overrides == {"learning_rate": "1e-05", "augment.flip": "False",
                               "image_size": "None"}


def test_names_are_filesystem_safe_and_unique():
  pairs = sweep.expand([{"dataset": "npz:../shared/data/usps/usps.npz"},
                        {"dataset": "npz:/data/mnist/mnist.npz"}], {})
  assert sweep.run_names(pairs) == ["dataset=usps.npz", "dataset=mnist.npz"]
  pairs = sweep.expand([{"model_kwargs.activation": "relu", "activation": "x"},
                        {"model_kwargs.activation": "tanh", "activation": "y"}], {})
  assert sweep.run_names(pairs)[0] == "model_kwargs.activation=relu,activation=x"
  with pytest.raises(sweep.SweepError, match="same overrides"):
    plan("--config", TINY, "--sweep_dir", "s", "--run", "seed=1", "--run", "seed=1 name=b")


@pytest.mark.parametrize("key,value", [
    ("learning_rate", 1e-5), ("num_epochs", 3), ("augment.flip", True), ("image_size", None),
    ("decay_epochs", (30,)), ("decay_epochs", (30, 60)), ("model", "vgg11_bn"),
    ("model_kwargs.new_flag", True), ("model_kwargs.new_rate", 0.5),
    ("model_kwargs.new_name", "relu"), ("model_kwargs.new_shape", (1, 2))])
def test_values_survive_the_command_line(key, value):
  config = config_lib.load_config("configs/lenet1989.py")
  # schedule=step: decay_epochs are read (an override nothing reads is an error)
  config_lib.apply_overrides(config, [("schedule", "step"), (key, sweep.format_value(value))])
  node = config
  for part in key.split("."):
    node = node[part]
  assert node == value and type(node) is type(value)


def test_every_config_sweep_expands_and_validates():
  """Each config's get_sweep() (the ConvNeXt roadmap's too) names valid fields."""
  files = [f for f in sorted(glob.glob("configs/*.py"))
           if "def get_sweep" in open(f).read()]
  assert {"configs/lecun1989_nets.py", "configs/vgg.py", "configs/allcnn_c.py"} <= set(files)
  for path in files:
    runs = plan("--config", path, "--sweep_dir", "s")
    assert len({r.name for r in runs}) == len(runs) > 1, path
    for run in runs:  # the pre-flight's check: validate, build, trace the init
      assert config_lib.check(path, list(run.overrides.items())).num_params > 0
  vgg = plan("--config", "configs/vgg.py", "--sweep_dir", "s")
  assert [(r.overrides["model"], r.overrides["learning_rate"]) for r in vgg] == [
      ("vgg11", "0.01"), ("vgg11", "0.05"), ("vgg11_bn", "0.01"), ("vgg11_bn", "0.05")]
  assert vgg[0].overrides["pad"] == "2" and "fashion_mnist" in vgg[0].overrides["dataset"]


# ---------------------------------------------------------------------------- runners


def test_dry_run_prints_the_commands_and_writes_nothing(tmp_path, capsys):
  rc, out, _ = main(capsys, "--config", TINY, "--sweep_dir", str(tmp_path / "s"),
                    "--grid", "seed=0,1", "--no_config_sweep", "--config.num_epochs=2",
                    "--dry-run")
  assert rc == 0 and not (tmp_path / "s").exists()
  lines = [line for line in out.splitlines() if line.startswith("python")]
  assert lines == [
      f"python train.py --config {TINY} --workdir {tmp_path}/s/seed=0 --config.seed=0 "
      "--config.num_epochs=2",
      f"python train.py --config {TINY} --workdir {tmp_path}/s/seed=1 --config.seed=1 "
      "--config.num_epochs=2"]


def test_dry_run_gpus_assigns_cuda_visible_devices(tmp_path, capsys, monkeypatch):
  monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1,2,3")
  args = ["--config", TINY, "--sweep_dir", str(tmp_path), "--runner", "gpus", "--dry-run"]
  rc, out, _ = main(capsys, *args)
  lines = [line for line in out.splitlines() if "train.py" in line]
  assert rc == 0 and len(lines) == 15
  assert [line.split()[0] for line in lines[:5]] == [
      f"CUDA_VISIBLE_DEVICES={i}" for i in (0, 1, 2, 3, 0)]
  rc, out, _ = main(capsys, *args, "--gpus_per_run", "2")
  lines = [line for line in out.splitlines() if "train.py" in line]
  assert [line.split()[0] for line in lines[:3]] == [
      "CUDA_VISIBLE_DEVICES=0,1", "CUDA_VISIBLE_DEVICES=2,3", "CUDA_VISIBLE_DEVICES=0,1"]
  assert sweep.gpu_slots(3, 1) == ["0", "1", "2"]  # --gpus N: the first N visible
  rc, _, err = main(capsys, *args, "--gpus_per_run", "5")
  assert rc == 2 and err.startswith("error: --gpus_per_run=5")


def test_dry_run_slurm_prints_the_array_script(tmp_path, capsys):
  rc, out, _ = main(capsys, "--config", TINY, "--sweep_dir", str(tmp_path / "s"),
                    "--runner", "slurm", "--gpus_per_run", "2", "--parallel", "4",
                    "--sbatch", "partition=gpu", "--sbatch=--time=1:00:00",
                    "--slurm_setup", "source venv/bin/activate", "--dry-run")
  assert rc == 0 and not (tmp_path / "s").exists()
  for line in ("#SBATCH --array=0-14%4", "#SBATCH --nodes=1", "#SBATCH --ntasks=1",
               "#SBATCH --gres=gpu:2", "#SBATCH --partition=gpu", "#SBATCH --time=1:00:00",
               f"#SBATCH --output={tmp_path}/s/slurm/%A_%a.out", f"cd {ROOT}",
               "source venv/bin/activate", 'srun bash -c "${LINE}"',
               f'LINE=$(sed -n "$((SLURM_ARRAY_TASK_ID + 1))p" {tmp_path}/s/slurm/runs.txt)'):
    assert line + "\n" in out, line
  wd = f"{tmp_path}/s/net1_seed0"
  assert (f"mkdir -p {wd} && python train.py --config {TINY} --workdir {wd} "
          f"--config.model=lecun1989_net1 --config.seed=0 >> {wd}/log.txt 2>&1\n") in out


def test_slurm_writes_the_files_and_submits(tmp_path, capsys, monkeypatch):
  bin_dir = tmp_path / "bin"
  bin_dir.mkdir()
  fake = bin_dir / "sbatch"
  fake.write_text(f"#!/bin/sh\necho \"$@\" > {tmp_path}/sbatch_args\n"
                  "echo Submitted batch job 42\n")
  fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
  monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
  sd = tmp_path / "s"
  rc, out, _ = main(capsys, "--config", TINY, "--sweep_dir", str(sd), "--runner", "slurm")
  assert rc == 0 and "Submitted batch job 42" in out
  assert (tmp_path / "sbatch_args").read_text().strip() == f"{sd}/slurm/array.sbatch"
  assert len((sd / "slurm" / "runs.txt").read_text().splitlines()) == 15
  manifest = json.loads((sd / "sweep.json").read_text())
  assert manifest["runner"] == "slurm" and len(manifest["runs"]) == 15
  assert manifest["runs"][0]["command"].startswith("python train.py --config")


def _fake_run(tmp_path, name: str, code: str) -> sweep.Run:
  workdir = str(tmp_path / name)
  return sweep.Run(name, {}, workdir, ["python", "-c", code, workdir])


def test_local_runner_fills_every_slot_and_reports_failures(tmp_path, capsys):
  # Each fake run records the GPU it was given and writes a finished summary.
  ok = ("import json, os, sys, time; time.sleep(0.3); d = sys.argv[1]; "
        "json.dump({'gpu': os.environ['CUDA_VISIBLE_DEVICES'], 'eval_top1': 0.5, "
        "'step': 1, 'total_steps': 1}, open(os.path.join(d, 'summary.json'), 'w'))")
  bad = "print('error: boom'); raise SystemExit(2)"
  runs = [_fake_run(tmp_path, f"r{i}", ok) for i in range(3)] + [_fake_run(tmp_path, "x", bad)]
  failed = sweep.run_local(list(enumerate(runs, 1)), 4, ["0", "1"])
  out = capsys.readouterr().out
  assert failed == 1
  gpus = [json.load(open(tmp_path / f"r{i}" / "summary.json"))["gpu"] for i in range(3)]
  assert gpus[:2] == ["0", "1"] and set(gpus) == {"0", "1"}
  assert "run 1/4: r0 (GPU 0) done 50.00%" in out
  assert "run 4/4: x (GPU " in out and "FAILED (exit 2)" in out and "error: boom" in out
  assert "error: boom" in (tmp_path / "x" / "log.txt").read_text()


def test_processes_runner_runs_that_many_at_once(tmp_path, capsys):
  """Slots without a GPU (the processes runner): runs overlap, two at a time."""
  ok = ("import json, os, sys, time; d = sys.argv[1]; t = time.time(); time.sleep(1.0); "
        "json.dump({'start': t, 'end': time.time(), 'eval_top1': 0.5, 'step': 1, "
        "'total_steps': 1}, open(os.path.join(d, 'summary.json'), 'w'))")
  runs = [_fake_run(tmp_path, f"r{i}", ok) for i in range(3)]
  assert sweep.run_local(list(enumerate(runs, 1)), 3, [None, None]) == 0
  spans = [json.load(open(tmp_path / f"r{i}" / "summary.json")) for i in range(3)]
  assert spans[1]["start"] < spans[0]["end"]  # the first two ran together
  assert spans[2]["start"] >= min(spans[0]["end"], spans[1]["end"])  # the third waited
  assert "run 3/3: r2 done 50.00%" in capsys.readouterr().out
  rc, out, _ = main(capsys, "--config", TINY, "--sweep_dir", str(tmp_path / "s"),
                    "--runner", "processes", "--parallel", "2", "--dry-run")
  assert rc == 0 and out.splitlines()[1] == "# 2 at a time, each run as soon as one ends; in order:"


# ---------------------------------------------------------------------------- validation


def test_runs_that_differ_only_in_their_seed_are_traced_once(tmp_path, monkeypatch):
  from training import config as config_lib  # pylint: disable=g-import-not-at-top
  entries = [{"model": "lecun1989_net1", "seed": "0"}, {"model": "lecun1989_net1", "seed": "1"},
             {"model": "lecun1989_net2", "seed": "1"}]
  runs = sweep.build_runs(TINY, str(tmp_path), entries, {}, {"learning_rate": "0.2"})
  traced = []
  check = config_lib.check
  monkeypatch.setattr(config_lib, "check", lambda *a, **k: traced.append(a) or check(*a, **k))
  configs = sweep.check_configs(TINY, runs)
  assert len(traced) == 2  # net1 (seed 0 stands for seed 1) and net2
  # Each config is the one the full check gives it, seed included.
  for run in runs:
    assert configs[run.name] == sweep.check_config(TINY, run)
  assert [configs[r.name]["seed"] for r in runs] == [0, 1, 1]
  bad = sweep.build_runs(TINY, str(tmp_path), [{"seed": "0"}, {"seed": "x"}], {}, {})
  with pytest.raises(sweep.SweepError, match="config.seed is an int; got 'x'"):
    sweep.check_configs(TINY, bad)



@pytest.mark.parametrize("args,message", [
    (["--grid", "sed=0,1"], "error: run 'net1_seed0,sed=0': unknown config key 'sed'"),
    (["--config.lerning_rate=0.1"], "unknown config key 'lerning_rate'"),
    (["--run", "model=lecun1989_net9"], "unknown model 'lecun1989_net9'"),
    (["--run", "model_kwargs.bogus=1"], "does not take ['bogus']"),
    (["--run", "num_epochs=1.5"], "config.num_epochs is an int; got '1.5'"),
    (["--grid", "seed=0,1"], "--grid seed collides"),
    (["--grid", "seed=0,0", "--no_config_sweep"], "repeats a value"),
    (["--run", "learning_rate"], "is not KEY=VALUE"),
    (["--run", "seed=1", "--config.seed=2", "--run", "seed=3"], "the sweep varies seed"),
    (["--run", "dataset=npz:/nowhere.npz"], "npz file not found: /nowhere.npz"),
    (["--run", "init_from=/nowhere.pth"], "pretrained weights not found: '/nowhere.pth'"),
    (["--runner", "processes"], "--runner processes runs --parallel N at once, N >= 2 (got 0)"),
])
def test_bad_input_is_one_error_line_and_exit_2(tmp_path, capsys, args, message):
  rc, out, err = main(capsys, "--config", TINY, "--sweep_dir", str(tmp_path / "s"), *args)
  assert rc == 2 and message in err, err
  assert err.startswith("error: ") and err.count("\n") == 1
  assert not (tmp_path / "s").exists()  # nothing launched or written


@pytest.mark.parametrize("config,message", [
    ("configs/lecun1989_nets.py:tiny,seeds=x",  # read by get_sweep
     "error: configs/lecun1989_nets.py:tiny,seeds=x: config argument seeds=x: seeds takes "
     "an int"),
    ("configs/vgg.py:tinny", "did you mean tiny?"),
    ("configs/lecun1989_nets.py:tiny,net=9", "net=9 is not valid: net is one of 1, 2, 3"),
])
def test_a_bad_config_argument_is_one_error_line(tmp_path, capsys, config, message):
  rc, _, err = main(capsys, "--config", config, "--sweep_dir", str(tmp_path / "s"))
  assert rc == 2 and message in err and err.count("\n") == 1, err


def test_config_without_sweep_needs_a_grid(tmp_path, capsys):
  rc, _, err = main(capsys, "--config", "configs/lenet1989.py", "--sweep_dir", str(tmp_path))
  assert rc == 2 and "has no get_sweep()" in err and "--grid" in err


def test_finished_runs_are_skipped_and_changed_configs_refused(tmp_path, capsys):
  sd = tmp_path / "s"
  runs = plan("--config", TINY, "--sweep_dir", str(sd), "--run", "seed=0", "--run", "seed=1")
  for run in runs:  # both finished, as train.py leaves them
    os.makedirs(run.workdir)
    config = sweep.check_config(TINY, run)
    config["stop_after_steps"] = 7  # a field that does not change the result
    json.dump(config, open(os.path.join(run.workdir, "config.json"), "w"))
    json.dump({"model": "lecun1989_net5", "num_params": 1060, "step": 40, "total_steps": 40,
               "eval_top1": 0.25, "wall_time_sec": 1.0, "image_shape": [16, 16, 1],
               "num_classes": 10},
              open(os.path.join(run.workdir, "summary.json"), "w"))
  argv = ["--config", TINY, "--sweep_dir", str(sd), "--run", "seed=0", "--run", "seed=1"]
  rc, out, _ = main(capsys, *argv)
  assert rc == 0 and "2 finished already (skipped)" in out
  assert "run 2/2: seed=1 finished before 25.00%, skipped" in out
  assert "0 of 0 runs done" in out and (sd / "results.md").exists()
  assert not os.path.exists(os.path.join(runs[0].workdir, "log.txt"))  # nothing ran
  # A run that stopped early (stop_after_steps) is not finished: it would resume.
  json.dump({"step": 20, "total_steps": 40, "eval_top1": 0.2},
            open(os.path.join(runs[1].workdir, "summary.json"), "w"))
  assert sweep.run_status(runs[1], sweep.check_config(TINY, runs[1])) == "partial"
  rc, _, err = main(capsys, *argv, "--config.learning_rate=0.5")
  assert rc == 2 and "was started with another config (learning_rate: 0.03 there, 0.5 now)" in err


# ---------------------------------------------------------------------------- collector


def _write_run(sweep_dir, name, overrides, model, acc, seed_evals=(0.5,), finished=True):
  workdir = os.path.join(sweep_dir, name)
  os.makedirs(workdir)
  json.dump({"model": model, "dataset": "synthetic", "model_kwargs": {},
             "synthetic": {"shape": [16, 16, 1], "num_classes": 10}},
            open(os.path.join(workdir, "config.json"), "w"))
  with open(os.path.join(workdir, "metrics.jsonl"), "w") as f:
    for i, a in enumerate([*seed_evals, acc]):
      f.write(json.dumps({"step": 10 * (i + 1), "train_loss": 1.0}) + "\n")
      f.write(json.dumps({"step": 10 * (i + 1), "eval_top1": a}) + "\n")
  steps = 10 * (len(seed_evals) + 1)
  if finished:
    json.dump({"model": model, "dataset": "synthetic", "num_params": 2570 if model.endswith("1")
               else 1060, "step": steps, "total_steps": steps, "eval_top1": acc,
               "eval_top5": 1.0, "eval_loss": 0.1, "wall_time_sec": 3.0},
              open(os.path.join(workdir, "summary.json"), "w"))
  return {"name": name, "overrides": overrides, "workdir": workdir}


def test_collector_tables_means_and_plots(tmp_path, capsys):
  sd = str(tmp_path)
  runs = [_write_run(sd, f"net{n}_seed{s}", {"model": f"lecun1989_net{n}", "seed": str(s)},
                     f"lecun1989_net{n}", acc)
          for n, accs in ((1, (0.84, 0.86)), (5, (0.90, 0.93))) for s, acc in enumerate(accs)]
  runs.append(_write_run(sd, "net5_seed2", {"model": "lecun1989_net5", "seed": "2"},
                         "lecun1989_net5", 0.6, finished=False))
  json.dump({"config": TINY, "command": "python launch/sweep.py ...", "runs": runs},
            open(tmp_path / "sweep.json", "w"))
  rows = collect.collect(sd)
  assert "| net1 | 2/2 | 2,570 | 2,560 | 85.00 ± 1.41 | 15.00 ± 1.41 | 3 |" in \
      capsys.readouterr().out
  md = (tmp_path / "results.md").read_text()
  assert "| net5 | 2/3 | 1,060 | 4,992 | 91.50 ± 2.12 | 8.50 ± 2.12 | 3 |" in md
  assert ("| net1_seed1 | model=lecun1989_net1 seed=1 | 2,570 | 2,560 | 86.00 | 14.00 "
          "| 20/20 | 3 | finished |") in md
  assert "| net5_seed2 | model=lecun1989_net5 seed=2 |  | 4,992 | 60.00 | 40.00 | 20 |  " \
         "| incomplete |" in md
  csv_rows = (tmp_path / "results.csv").read_text().splitlines()
  assert csv_rows[0].startswith("name,status,overrides,model,seed,dataset,params,macs,")
  assert csv_rows[1].startswith("net1_seed0,finished,model=lecun1989_net1 seed=0,"
                                "lecun1989_net1,0,synthetic,2570,2560,0.84,")
  assert (tmp_path / "results_mean.csv").read_text().splitlines()[1].startswith(
      "net1,2,2,\"0,1\",2570,2560,85.0,1.414")
  for png in ("accuracy_vs_step.png", "accuracy_vs_params.png", "accuracy_vs_flops.png"):
    assert (tmp_path / png).stat().st_size > 10_000, png
  assert [r["status"] for r in rows][-1] == "incomplete"


def test_collector_without_manifest_finds_what_differs(tmp_path):
  for seed, acc in ((0, 0.5), (1, 0.7)):
    _write_run(str(tmp_path / "runs"), f"seed{seed}", {}, "lecun1989_net1", acc)
    path = tmp_path / "runs" / f"seed{seed}" / "config.json"
    json.dump({**json.load(open(path)), "seed": seed, "stop_after_steps": seed}, open(path, "w"))
  rows = collect.collect(str(tmp_path), quiet=True)
  assert [r["overrides"] for r in rows] == [{"seed": "0"}, {"seed": "1"}]
  assert "| runs | 2/2 | 2,570 | 2,560 | 60.00 ± 14.14 |" in (tmp_path / "results.md").read_text()


def test_group_labels_drop_the_seed():
  assert collect.group_label("net1_seed0", {}) == "net1"
  assert collect.group_label("model=vgg11,seed=2", {}) == "model=vgg11"
  assert collect.group_label("runs/seed1", {}) == "runs"
  assert collect.group_label("a", {"model": "vgg11", "seed": "0"}) == "model=vgg11"
  assert collect.group_label("b", {"seed": "0"}) == "all"


def test_input_shape_from_run_info_summary_or_config(tmp_path):
  assert collect.input_shape(str(tmp_path), {}, {"image_shape": [8, 8, 3], "num_classes": 5}) \
      == ((8, 8, 3), 5)
  # The printed lines are not read (run_info.json says it: tests/test_rundir.py).
  (tmp_path / "log.txt").write_text(
      "data: npz:x.npz: 320 train / 2007 test images of (16, 16, 1), 10 classes; 1 device\n")
  assert collect.input_shape(str(tmp_path), {}, None) is None
  (tmp_path / "run_info.json").write_text('{"image_shape": [16, 16, 1], "num_classes": 10}')
  assert collect.input_shape(str(tmp_path), {}, None) == ((16, 16, 1), 10)
  empty = str(tmp_path / "none")
  syn = {"dataset": "synthetic", "synthetic": {"shape": [12, 12, 3], "num_classes": 4}, "pad": 2}
  assert collect.input_shape(empty, syn, None) == ((16, 16, 3), 4)
  assert collect.input_shape(empty, {"dataset": "digits", "image_size": 32}, None) == \
      ((32, 32, 1), 10)
  assert collect.input_shape(empty, {"dataset": "cifar100"}, None) == ((32, 32, 3), 100)
  assert collect.input_shape(empty, {"dataset": "imagenette/160px"}, None) is None
  np.savez(tmp_path / "d.npz", x_train=np.zeros((3, 20, 20), np.uint8), y_train=np.arange(3),
           x_test=np.zeros((2, 20, 20), np.uint8), y_test=np.array([0, 6]))
  assert collect.input_shape(empty, {"dataset": f"npz:{tmp_path}/d.npz", "pad": 1}, None) == \
      ((22, 22, 1), 7)


# ---------------------------------------------------------------------------- end to end


def test_two_real_runs_through_train_py(tmp_path, capsys):
  """The sequential runner, train.py, the collector; then the same command skips both."""
  sd = tmp_path / "s"
  argv = ["--config", TINY, "--sweep_dir", str(sd), "--grid",
          "model=lecun1989_net1,lecun1989_net2", "--no_config_sweep"]
  rc, out, _ = main(capsys, *argv)
  assert rc == 0, out
  assert "run 1/2: model=lecun1989_net1 ... done" in out and "2 of 2 runs done" in out
  for name in ("model=lecun1989_net1", "model=lecun1989_net2"):
    log = (sd / name / "log.txt").read_text()
    assert log.startswith("=== ") and "final test accuracy" in log
    assert rundir.is_finished(json.load(open(sd / name / "summary.json")))
  md = (sd / "results.md").read_text()
  assert "| model=lecun1989_net1 | model=lecun1989_net1 | 2,570 | 2,560 |" in md
  assert "| model=lecun1989_net2 | model=lecun1989_net2 | 3,214 | 3,192 |" in md
  assert all((sd / p).stat().st_size > 0 for p in
             ("accuracy_vs_step.png", "accuracy_vs_params.png", "accuracy_vs_flops.png"))
  rc, out, _ = main(capsys, *argv, "--no_collect")
  assert rc == 0 and "2 finished already (skipped)" in out and "0 of 0 runs done" in out


def test_a_config_file_that_fails_to_load_is_one_line(tmp_path, capsys):
  broken = tmp_path / "broken.py"
  broken.write_text("def get_config(:\n")
  rc, _, err = main(capsys, "--config", str(broken), "--sweep_dir", str(tmp_path / "s"))
  assert rc == 2 and "cannot be loaded: SyntaxError" in err, err
  assert err.startswith("error: ") and err.count("\n") == 1


def test_preflight_says_a_tfds_dataset_is_not_prepared(tmp_path, capsys):
  """Before any run starts: a TFDS dataset that is neither prepared nor downloadable."""
  pytest.importorskip("tensorflow_datasets")
  empty = tmp_path / "tfds"
  empty.mkdir()
  rc, _, err = main(capsys, "--config", TINY, "--sweep_dir", str(tmp_path / "s"),
                    "--run", "dataset=mnist", f"--config.data_dir={empty}",
                    "--config.download=false")
  assert rc == 2 and "TFDS dataset 'mnist' is not prepared" in err, err
  assert err.startswith("error: ") and err.count("\n") == 1
  assert not (tmp_path / "s").exists()
