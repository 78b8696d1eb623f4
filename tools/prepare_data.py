r"""Prepares a TFDS dataset for training: download (or read the manual files) and write it.

  python tools/prepare_data.py cifar10 --data_dir ~/tensorflow_datasets
  # ImageNet: put ILSVRC2012_img_train.tar and ILSVRC2012_img_val.tar in
  # <data_dir>/downloads/manual first (TFDS cannot download them).
  python tools/prepare_data.py imagenet2012 --data_dir /data/tfds

This is ``tfds.builder(name, data_dir=...).download_and_prepare()``: what TFDS's own
``tfds build`` command does for the datasets this codebase trains on, without the
Apache Beam that ``tfds build`` imports (not in requirements.txt; only Beam-based
datasets, which none of our configs use, need it). After it, ``train.py
--config.dataset=NAME --config.data_dir=DIR`` finds the data. Bad input (an unknown
name, a missing manual download, no network for a download) is one ``error:`` line,
exit status 2.
"""

from __future__ import annotations

import argparse
import difflib
import os
import sys
from typing import Sequence

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
  sys.path.insert(0, ROOT)

from training import cli  # noqa: E402


class PrepareError(RuntimeError):
  """One line for the user."""


def prepare(name: str, data_dir: str | None = None, manual_dir: str | None = None) -> str:
  """Downloads (or reads from ``manual_dir``) and prepares ``name``; returns where.

  Raises:
    PrepareError: unknown dataset, missing manual files, a failed download.
  """
  from input_pipeline import datasets  # pylint: disable=g-import-not-at-top
  _, tfds = datasets._import_tf()  # pylint: disable=protected-access
  # An unknown name sends TFDS to Google Cloud's metadata server, and TensorFlow's C++
  # logs the failed probe on file descriptor 2 before our one line: keep it quiet.
  quiet = datasets._quiet_native_stderr  # pylint: disable=protected-access
  try:
    with quiet():
      builder = tfds.builder(name, data_dir=data_dir)
  except Exception as e:  # pylint: disable=broad-except
    with quiet():
      builders = tfds.list_builders()
    close = difflib.get_close_matches(name.split("/")[0], builders, n=3)
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    cause = _first_line(e).rstrip(".")
    raise PrepareError(f"unknown TFDS dataset {name!r}: {cause}.{hint}") from None
  manual_dir = manual_dir or os.path.join(_root(builder, data_dir), "downloads", "manual")
  config = tfds.download.DownloadConfig(manual_dir=manual_dir)
  try:
    builder.download_and_prepare(download_config=config)
  except Exception as e:  # pylint: disable=broad-except
    manual = getattr(builder, "MANUAL_DOWNLOAD_INSTRUCTIONS", None)
    need = (f" It needs a manual download: put its files in {manual_dir} (see "
            f"https://www.tensorflow.org/datasets/catalog/{name.split('/')[0]})"
            if manual else "")
    raise PrepareError(f"could not prepare {name!r} in {builder.data_dir}: "
                       f"{type(e).__name__}: {_first_line(e)}.{need}") from None
  return builder.data_dir


def _root(builder, data_dir: str | None) -> str:
  if data_dir:
    return os.path.expanduser(data_dir)
  path, suffix = builder.data_dir.rstrip("/"), builder.info.full_name
  return path[:-len(suffix)].rstrip("/") if path.endswith(suffix) else path


def _first_line(e: BaseException) -> str:
  lines = str(e).strip().splitlines()
  return lines[0] if lines else type(e).__name__


def main(argv: Sequence[str] | None = None) -> int:
  p = cli.ArgumentParser(description=__doc__.split("\n\n")[0].strip(),
                         formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("name", help="TFDS dataset name, e.g. cifar10 or imagenet2012")
  p.add_argument("--data_dir", help="TFDS data directory (default: TFDS's own)")
  p.add_argument("--manual_dir", help="where manually downloaded files are "
                 "(default: <data_dir>/downloads/manual)")
  args = p.parse_args(argv)
  try:
    where = prepare(args.name, args.data_dir, args.manual_dir)
  except PrepareError as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  print(f"prepared {args.name} in {where}; train with --config.dataset={args.name}"
        + (f" --config.data_dir={args.data_dir}" if args.data_dir else ""))
  return 0


if __name__ == "__main__":
  sys.exit(main())
