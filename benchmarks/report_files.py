"""The benchmarks' result files, one convention for all: ``--out FILE.md`` writes the
table there, the numbers behind it to ``FILE.json`` and their plot to ``FILE.png``;
``--plot A.json[=LABEL] B.json[=LABEL] ... [--out X.png]`` reads such JSON files back
and draws them together (benchmarks/throughput.py, benchmarks/conv_layers.py)."""

from __future__ import annotations

import json
import os
from typing import Any, Callable, Sequence


class InputError(ValueError):
  """Bad input: one line for the user, exit status 2."""


def write_text(out: str, text: str) -> None:
  """``text`` to ``out``, its folder made if need be."""
  os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
  with open(out, "w") as f:
    f.write(text)


def write(out: str, table: str, record: dict[str, Any],
          draw: Callable[[str], Any]) -> str:
  """``table`` to ``out`` (``write_text``), ``record`` to the JSON file beside it and
  ``draw(path)``'s plot to the PNG; returns their common stem."""
  write_text(out, table)
  stem = out[:-3] if out.endswith(".md") else out
  with open(stem + ".json", "w") as f:
    json.dump(record, f, indent=2)
  draw(stem + ".png")
  return stem


def read(entries: Sequence[str]) -> list[tuple[str, dict[str, Any]]]:
  """``(label, record)`` for each ``PATH[=LABEL]`` of ``--plot``: the JSON that ``write``
  wrote, labelled by the file's name unless a label is given."""
  found = []
  for entry in entries:
    path, _, label = entry.partition("=")
    try:
      with open(path) as f:
        record = json.load(f)
      if not (isinstance(record, dict) and isinstance(record.get("rows"), list)):
        raise ValueError("no rows")
    except (OSError, ValueError) as e:
      raise InputError(f"--plot {path}: not a JSON file that --out wrote "
                       f"({type(e).__name__}: {e})") from None
    found.append((label or os.path.splitext(os.path.basename(path))[0], record))
  return found


def plot_path(entries: Sequence[str], out: str | None) -> str:
  """Where ``--plot`` draws: ``--out``, which must be a .png, or beside the first file."""
  out = out or os.path.splitext(entries[0].partition("=")[0])[0] + ".png"
  if not out.endswith(".png"):
    raise InputError(f"--out {out}: with --plot, give a .png file")
  return out
