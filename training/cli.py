"""The command line of every entry point (train.py, launch/, tools/, benchmarks/,
experiments/): argparse's parser with the project's error format."""

import argparse
import sys


class ArgumentParser(argparse.ArgumentParser):
  """``argparse.ArgumentParser`` whose errors are one line, ``error: ...`` on stderr, and
  exit status 2, as every other bad input here. (argparse prints its usage block before
  the message; ``--help`` still prints it.)"""

  def error(self, message):
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(2)
