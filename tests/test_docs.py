"""The commands in the documentation still run: every ``python train.py``,
``benchmarks/speedrun.py``, ``benchmarks/throughput.py``, ``benchmarks/conv_layers.py``,
``launch/sweep.py`` and ``experiments/run.py`` command in the markdown files goes
through its program's own argument parser and config check, without training; the commands of the tools that read
finished runs (``tools/inside.py``, ...) through their argument parser.

The README's figures each come with the command that measured them; a renamed config,
variant, field or flag would leave a command that fails at its first line. Where a
document shows the error a command prints (a ``$ python train.py ...`` line followed by
an ``error: ...`` line), the check gives that same message.

A command is left out when it holds a placeholder for its config or a config value
(``...``, ``<name>``, ``[optional]``, a shell variable not set in its block, or a single
capital letter such as ``C``); a path's placeholder (``--workdir W``) is checked like any
other path.
"""

import glob
import os
import re
import shlex

import pytest

from training import config as config_lib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Programs whose commands get their argument parser only: the experiments' runner (its
# sweeps have tests of their own) and the tools that read runs that are not here.
PARSED_ONLY = ("experiments/run.py", "tools/inside.py", "tools/convert_weights.py",
               "tools/input_benchmark.py", "tools/model_report.py", "tools/soak.py")
PROGRAMS = ("train.py", "benchmarks/speedrun.py", "benchmarks/throughput.py",
            "benchmarks/conv_layers.py", "launch/sweep.py", *PARSED_ONLY)
# Flags whose values are paths: a placeholder there (W, $RUNS/x) still leaves a command.
PATH_FLAGS = ("--workdir", "--checkpoint", "--sweep_dir", "--out", "--data_dir")
_COMMAND = re.compile(r"python3? (" + "|".join(re.escape(p) for p in PROGRAMS) + r")\b")
_ASSIGNMENT = re.compile(r'([A-Z_][A-Z0-9_]*)="')


def _documents() -> list[str]:
  found = {"README.md"}
  for folder in ("docs", "benchmarks", "launch", "experiments", "configs", "tools"):
    found.update(os.path.relpath(p, ROOT) for p in
                 glob.glob(os.path.join(ROOT, folder, "**", "*.md"), recursive=True))
  return sorted(found)


def commands(text: str) -> list[tuple[int, str, list[str], str | None]]:
  """``(line, program, argv, error)`` for each command in a markdown ``text``: in code
  blocks (backslash continuations joined, ``# comments`` dropped, ``$NAME`` from a
  ``NAME="..."`` earlier in the same block) and in inline code (which may wrap lines).
  ``error`` is the message of an ``error: ...`` line right after the command, if any."""
  lines = text.split("\n")
  found, fenced, block_vars = [], False, {}
  for i, line in enumerate(lines):
    if line.lstrip().startswith("```"):
      fenced, block_vars = not fenced, {}
      continue
    assignment = _ASSIGNMENT.match(line) if fenced else None
    if assignment:  # NAME="..." up to its closing quote, maybe lines later
      value, j = line[assignment.end():], i
      while '"' not in value and j + 1 < len(lines):
        j += 1
        value += " " + lines[j]
      block_vars[assignment.group(1)] = " ".join(value.split('"')[0].split())
    for match in _COMMAND.finditer(line):
      text_, j = line[match.start():], i
      if not fenced:  # inline code, to its closing backtick
        while "`" not in text_ and j + 1 < len(lines):
          j += 1
          text_ += " " + lines[j].strip()
        text_ = text_.split("`")[0]
      else:
        while text_.rstrip().endswith("\\") and j + 1 < len(lines):
          j += 1
          text_ = text_.rstrip()[:-1] + " " + lines[j].strip()
        text_ = re.split(r"\s#", text_)[0]
      for name, value in block_vars.items():
        text_ = re.sub(rf"\$\{{?{name}\b\}}?", value, text_)
      after = lines[j + 1] if j + 1 < len(lines) else ""
      error = after[len("error: "):] if fenced and after.startswith("error: ") else None
      # A command inside a quoted outer one (ssh --command "... train.py ...") ends
      # with the outer quote: dropped.
      text_ = text_.rstrip() if text_.count('"') % 2 == 0 else text_.rstrip().rstrip('"')
      found.append((i + 1, match.group(1), shlex.split(text_)[2:], error))
  return found


def _placeholder(token: str) -> bool:
  return (any(c in token for c in ("...", "<", "$", "[")) or
          re.fullmatch(r"[A-Z]", token) is not None)


def _checked(argv: list[str]) -> bool:
  """False for the program's bare name in prose, and where an argument or a value is a
  placeholder (but a path's)."""
  return bool(argv) and not any(
      _placeholder(token.split("=", 1)[-1]) and not (k and argv[k - 1] in PATH_FLAGS)
      for k, token in enumerate(argv))


CASES = [pytest.param(program, argv, error, id=f"{doc}:{line}")
         for doc in _documents()
         for line, program, argv, error in commands(open(os.path.join(ROOT, doc)).read())
         if _checked(argv)]


def _check_train(argv: list[str]) -> None:
  """What train.py does with its arguments before it opens any data: its parser, then
  the check it runs first (``training.config.check``: validated, model built, initial
  state traced)."""
  import train  # pylint: disable=g-import-not-at-top
  config, _ = train.parse_args(argv)
  config_lib.check(config)


def _check_speedrun(argv: list[str]) -> None:
  from benchmarks import speedrun  # pylint: disable=g-import-not-at-top
  speedrun.parse_args(argv)  # the config check of the runs it starts


def _check_throughput(argv: list[str]) -> None:
  import models  # pylint: disable=g-import-not-at-top
  from benchmarks import throughput  # pylint: disable=g-import-not-at-top
  args, overrides = throughput.parse_args(argv)
  if args.config:
    config = config_lib.load_config(args.config)
    config_lib.validate(config_lib.apply_overrides(config, overrides))
  names = [args.model] if args.model else [
      throughput.parse_entry(e)["model"] for e in (args.models or "").split(",") if e]
  unknown = [n for n in names if n not in models.list_models()]
  assert not unknown, f"not in the zoo: {unknown}"


def _check_conv_layers(argv: list[str]) -> None:
  """Its parser, and the model's name; with ``--plot``, the JSON files it would draw."""
  import models  # pylint: disable=g-import-not-at-top
  from benchmarks import conv_layers  # pylint: disable=g-import-not-at-top
  args = conv_layers.parse_args(argv)
  if args.plot:
    missing = [e.partition("=")[0] for e in args.plot
               if not os.path.isfile(os.path.join(ROOT, e.partition("=")[0]))]
    assert not missing, f"no such file: {missing}"
  else:
    assert args.model in models.list_models(), f"not in the zoo: {args.model}"


def _check_sweep(argv: list[str]) -> None:
  """The sweep's parser and plan, then each run's config as train.py would load it
  (launch/sweep.py traces each run's model too; the sweeps' own tests do that)."""
  from launch import sweep  # pylint: disable=g-import-not-at-top
  if argv[:1] == ["collect"]:  # its one option
    assert len(argv) == 3 and argv[1] == "--sweep_dir", argv
    return
  args, fixed = sweep.parse_args(argv)
  for run in sweep.plan(args, fixed):
    config = config_lib.load_config(args.config)
    config_lib.validate(config_lib.apply_overrides(config, list(run.overrides.items())))


def _parser_of(program: str):
  def check(argv: list[str]) -> None:
    import importlib  # pylint: disable=g-import-not-at-top
    importlib.import_module(program[:-len(".py")].replace("/", ".")).parse_args(argv)
  return check


CHECKS = {"train.py": _check_train, "benchmarks/speedrun.py": _check_speedrun,
          "benchmarks/throughput.py": _check_throughput,
          "benchmarks/conv_layers.py": _check_conv_layers, "launch/sweep.py": _check_sweep,
          **{program: _parser_of(program) for program in PARSED_ONLY}}


def test_the_documents_hold_commands_to_check():
  """The extraction finds what it should (a guard against a parser that finds nothing):
  the README's first run and each Results table command."""
  ids = [p.id for p in CASES]
  assert "README.md:20" in ids, ids[:10]
  assert sum(i.startswith("README.md") for i in ids) >= 25
  assert sum(i.startswith("docs/lenets.md") for i in ids) >= 10


@pytest.mark.parametrize("program,argv,error", CASES)
def test_documented_command_parses_and_checks(program, argv, error, monkeypatch):
  monkeypatch.chdir(ROOT)  # the documents' commands run from the repository root
  if error is None:
    CHECKS[program](argv)
    return
  with pytest.raises(config_lib.ConfigError) as raised:
    CHECKS[program](argv)
  assert str(raised.value) == error


def test_extraction_of_a_block_with_variables_an_error_and_inline_code():
  text = "\n".join([
      "```bash",
      'S="--config.num_epochs=2',
      '   --config.batch_size=8"',
      "python train.py --config configs/lenet1989.py $S \\",
      "    --workdir W  # a comment",
      "$ python train.py --config configs/resnet50.py --config.pad=2",
      "error: it says why",
      "```",
      "Inline: `python benchmarks/speedrun.py --seeds 1",
      "--config.seed=3`, then prose.",
  ])
  assert commands(text) == [
      (4, "train.py", ["--config", "configs/lenet1989.py", "--config.num_epochs=2",
                       "--config.batch_size=8", "--workdir", "W"], None),
      (6, "train.py", ["--config", "configs/resnet50.py", "--config.pad=2"],
       "it says why"),
      (9, "benchmarks/speedrun.py", ["--seeds", "1", "--config.seed=3"], None)]
  assert not _checked(["--config", "C"]) and not _checked(["--config.seed=N"])
  assert _checked(["--config", "configs/x.py", "--workdir", "W"])


def test_a_broken_command_fails_the_check(monkeypatch):
  monkeypatch.chdir(ROOT)
  with pytest.raises(config_lib.ConfigError, match="unknown config key 'num_epoch'"):
    _check_train(["--config", "configs/lenet1989.py", "--config.num_epoch=2"])
  with pytest.raises(config_lib.ConfigError, match="not found"):
    _check_train(["--config", "configs/lenet1990.py"])
  with pytest.raises(config_lib.ConfigError, match="model"):
    _check_train(["--config", "configs/lenet1989.py", "--config.model_kwargs.widht=3"])
  with pytest.raises(SystemExit):  # argparse: an unknown flag
    _check_train(["--config", "configs/lenet1989.py", "--workdri", "w"])
