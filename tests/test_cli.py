"""training/cli.py: every entry point's command line fails with one line and exit status
2, argparse's usage block left out."""

import importlib

import pytest

from training import cli

ENTRY_POINTS = ("train", "launch.sweep", "launch.collect", "experiments.run",
                "tools.evaluate", "tools.convert_weights", "tools.inside",
                "tools.model_report", "tools.profile_summary", "tools.prepare_data",
                "tools.input_benchmark", "tools.lecun1989_study", "tools.soak",
                "benchmarks.throughput", "benchmarks.speedrun", "benchmarks.conv_layers",
                "benchmarks.cpu_dispatch")


def test_an_error_is_one_line_and_help_keeps_the_usage(capsys):
  p = cli.ArgumentParser(prog="x.py")
  p.add_argument("--n", type=int, required=True)
  with pytest.raises(SystemExit) as e:
    p.parse_args(["--n", "two"])
  assert e.value.code == 2
  assert capsys.readouterr().err == "error: argument --n: invalid int value: 'two'\n"
  with pytest.raises(SystemExit) as e:
    p.parse_args(["--help"])
  assert e.value.code == 0 and "usage: x.py" in capsys.readouterr().out


@pytest.mark.parametrize("module", ENTRY_POINTS)
def test_an_unknown_flag_is_one_error_line_and_exit_2(module, capsys):
  main = importlib.import_module(module).main
  try:
    rc = main(["--no_such_flag=1"])
  except SystemExit as e:
    rc = e.code
  err = capsys.readouterr().err
  assert rc == 2, err
  assert err.startswith("error: ") and err.count("\n") == 1 and "usage:" not in err, err
  # argparse names the flag, or first a required argument that is missing
  assert "--no_such_flag" in err or "required" in err, err
