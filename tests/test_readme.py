"""The README cannot drift: every Python block runs, every documented command line parses.

* Every ```` ```python ```` block of README.md runs as a script of its own (fresh
  namespace) in a temporary directory that links the repository's ``physnetjax/`` and
  ``tests/`` (so relative paths of the README work and outputs land in the temporary
  ``runs/``). All default blocks share one subprocess. An HTML comment on the line
  before a block's fence marks it: ``<!-- readme-test: slow -->`` runs it only in the
  slow set, ``<!-- readme-test: needs MODULE -->`` skips it when MODULE is missing.
* Every ``python -m physnetjax.TOOL ...`` command of a ```` ```bash ```` block is parsed
  by that tool's own parser (unknown flags and bad values fail); synopsis lines with
  ``[optional]`` parts have their flags checked against the tool's ``--help``.
* Every ``--flag`` written anywhere in the README exists in some tool's ``--help``.
* Slow set: the runnable commands themselves, with tiny sizes (few steps, one epoch).
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import itertools
import json
import os
import re
import shlex
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
MARKER = re.compile(r"<!--\s*readme-test:\s*(.*?)\s*-->")
FENCE = re.compile(r"^```(\w*)\s*$")
TOOLS = ("train", "md", "eval", "check", "migrate", "spectra", "ensemble", "data.generate", "learn")
SUBCOMMANDS = {"spectra": ("harmonic", "ir"), "ensemble": ("combine", "calibrate")}
OTHER_SCRIPTS = ("tests/mutation/run.py", "tests/mutation/sweep.py", "benchmarks/run_all.py")


def readme_blocks(language: str) -> list[tuple[int, list[str], str]]:
    """(first line number, marker words, code) of every fenced block in ``language``."""
    lines = README.read_text(encoding="utf-8").splitlines()
    blocks, k = [], 0
    while k < len(lines):
        opening = FENCE.match(lines[k].strip())
        if opening is None:
            k += 1
            continue
        end = next(j for j in range(k + 1, len(lines)) if lines[j].strip() == "```")
        if opening.group(1) == language:
            previous = lines[k - 1] if k > 0 else ""
            marker = MARKER.search(previous)
            indent = len(lines[k]) - len(lines[k].lstrip())
            code = "\n".join(line[indent:] for line in lines[k + 1:end])
            blocks.append((k + 1, marker.group(1).split() if marker else [], code))
        k = end + 1
    return blocks


def python_blocks(slow: bool) -> list:
    params = []
    for line, words, code in readme_blocks("python"):
        needs = words[words.index("needs") + 1] if "needs" in words else None
        if ("slow" in words) != slow:
            continue
        params.append(pytest.param(line, needs, code, id=f"README.md:{line}"))
    return params


RUNNER = textwrap.dedent("""
    import contextlib, io, json, sys, time, traceback
    blocks = json.load(open(sys.argv[1]))
    for line, code in blocks:
        out, start = io.StringIO(), time.process_time()
        try:
            with contextlib.redirect_stdout(out):
                exec(compile(code, f"README.md:{line}", "exec"), {"__name__": "__main__"})
            result = {"line": line, "ok": True, "stdout": out.getvalue()}
        except BaseException:
            result = {"line": line, "ok": False, "stdout": out.getvalue(), "error": traceback.format_exc()}
        result["cpu_s"] = time.process_time() - start
        print("READMEBLOCK " + json.dumps(result), flush=True)
""")


def workspace(tmp_path: Path) -> Path:
    """A directory where the README's relative paths resolve and its outputs stay."""
    for name in ("physnetjax", "tests"):
        (tmp_path / name).symlink_to(ROOT / name)
    return tmp_path


def run_blocks(blocks, tmp_path: Path, timeout: float) -> dict:
    """Run ``[(line, code), ...]`` one after another in one subprocess; {line: result dict}."""
    work = workspace(tmp_path)
    (work / "blocks.json").write_text(json.dumps(blocks))
    (work / "runner.py").write_text(RUNNER)
    env = dict(os.environ, PYTHONPATH=str(ROOT), JAX_PLATFORMS=os.environ.get("JAX_PLATFORMS", "cpu"),
               MPLBACKEND="Agg")
    done = subprocess.run([sys.executable, "runner.py", "blocks.json"], cwd=work, env=env, capture_output=True,
                          text=True, timeout=timeout)
    results = {}
    for line in done.stdout.splitlines():
        if line.startswith("READMEBLOCK "):
            result = json.loads(line.removeprefix("READMEBLOCK "))
            results[result["line"]] = result
    if len(results) < len(blocks):
        raise AssertionError(f"README block runner stopped (exit {done.returncode}):\n{done.stderr[-3000:]}")
    return results


def _runnable(blocks) -> list:
    return [(line, code) for line, needs, code in blocks if needs is None or importlib.util.find_spec(needs)]


@pytest.fixture(scope="module")
def default_results(tmp_path_factory):
    blocks = [p.values for p in python_blocks(slow=False)]
    return run_blocks(_runnable(blocks), tmp_path_factory.mktemp("readme"), timeout=1800)


@pytest.mark.parametrize("line, needs, code", python_blocks(slow=False))
def test_python_block_runs(default_results, line, needs, code):
    if needs is not None and importlib.util.find_spec(needs) is None:
        pytest.skip(f"needs {needs}")
    result = default_results[line]
    assert result["ok"], f"README.md:{line} failed:\n{result['error']}"
    assert result["stdout"].strip(), f"README.md:{line} prints nothing when run as a script"


@pytest.mark.slow
@pytest.mark.parametrize("line, needs, code", python_blocks(slow=True))
def test_slow_python_block_runs(tmp_path, line, needs, code):
    if needs is not None and importlib.util.find_spec(needs) is None:
        pytest.skip(f"needs {needs}")
    result = run_blocks([(line, code)], tmp_path, timeout=1800)[line]
    assert result["ok"], f"README.md:{line} failed:\n{result['error']}"


# -- command lines ----------------------------------------------------------------------------------


def commands() -> list[tuple[int, str, list[str]]]:
    """(line, tool, argv) of every ``python -m physnetjax.TOOL`` command in the README's bash blocks."""
    found = []
    for line, _, code in readme_blocks("bash"):
        for statement in code.replace("\\\n", " ").splitlines():
            statement = statement.split(" #")[0].strip()
            match = re.match(r"(?:\S*python\S*)\s+-m\s+physnetjax\.([\w.]+)\s*(.*)", statement)
            if match and match.group(1) in TOOLS:
                found.append((line, match.group(1), match.group(2)))
    return found


SHELL_OPERATORS = {">", ">>", "2>", "|", "&&", "||", ";", "<", "<<"}


def argv_of(arguments: str) -> list[str]:
    """The tool's own arguments: the words before the first shell redirection or operator."""
    words = shlex.split(arguments)
    return next((words[:k] for k, word in enumerate(words) if word in SHELL_OPERATORS), words)


def tool_help(tool: str) -> str:
    """The full ``--help`` text of a tool (all subcommands for spectra and ensemble)."""
    module = importlib.import_module(f"physnetjax.{tool}" if tool in ("migrate",) else
                                     "physnetjax.data.generate" if tool == "data.generate" else
                                     f"physnetjax.{tool}.__main__")
    texts = []
    for argv in ([[sub, "--help"] for sub in SUBCOMMANDS[tool]] if tool in SUBCOMMANDS else [["--help"]]):
        stream = io.StringIO()
        with contextlib.redirect_stdout(stream), pytest.raises(SystemExit):
            module.main(argv)
        texts.append(stream.getvalue())
    return "\n".join(texts)


def parse(tool: str, argv: list[str]) -> None:
    """Parse ``argv`` with the tool's parser (SystemExit on an unknown flag or a bad value)."""
    if tool == "ensemble":
        importlib.import_module("physnetjax.ensemble.__main__").parse_args(argv)
        return
    builders = {"train": "physnetjax.train.cli", "md": "physnetjax.md.__main__", "eval": "physnetjax.eval.cli",
                "check": "physnetjax.check.__main__", "migrate": "physnetjax.migrate",
                "spectra": "physnetjax.spectra.__main__", "learn": "physnetjax.learn.__main__"}
    importlib.import_module(builders[tool]).build_parser().parse_args(argv)


FLAG = re.compile(r"(?<![\w-])--[a-z][a-z0-9-]*")


@pytest.mark.parametrize("line, tool, arguments", commands(), ids=lambda v: str(v)[:40])
def test_documented_command_parses(line, tool, arguments, capsys):
    if "[" in arguments or "..." in arguments or tool == "data.generate":  # generate's parser lives inside its main
        known = set(FLAG.findall(tool_help(tool)))
        missing = sorted(set(FLAG.findall(arguments)) - known)
        assert not missing, f"README.md:{line}: python -m physnetjax.{tool} has no {missing}"
        return
    try:
        parse(tool, argv_of(arguments))
    except SystemExit as error:
        if error.code == 0:   # --print-config or --help: prints and exits successfully
            return
        pytest.fail(f"README.md:{line}: python -m physnetjax.{tool} {arguments} does not parse: "
                    f"{capsys.readouterr().err.strip()} (exit {error.code})")


PYTEST_FLAGS = {"--dist", "--cov", "--cov-report"}  # pytest-xdist's option (test command), pytest-cov's (coverage)


def test_every_documented_flag_exists():
    known = set()
    for tool in TOOLS:
        known |= set(FLAG.findall(tool_help(tool)))
    for script in OTHER_SCRIPTS:
        done = subprocess.run([sys.executable, script, "--help"], cwd=ROOT, capture_output=True, text=True, timeout=120)
        known |= set(FLAG.findall(done.stdout))
    known |= PYTEST_FLAGS
    documented = set(FLAG.findall(README.read_text(encoding="utf-8")))
    assert not sorted(documented - known), f"README documents flags no tool has: {sorted(documented - known)}"


TINY = {"--steps": "20", "--save-every": "10", "--epochs": "1", "--time-ps": "0.05", "--replicas": "1",
        "--equilibration-ps": "0.01", "--record-every": "2", "--frames": "4"}


@pytest.mark.slow
@pytest.mark.parametrize("line, tool, arguments", [c for c in commands() if "[" not in c[2] and "..." not in c[2]
                                                   and "OLD" not in c[2] and "CKPT" not in c[2]],
                         ids=lambda v: str(v)[:40])
def test_documented_command_runs_with_tiny_sizes(tmp_path, line, tool, arguments):
    argv = argv_of(arguments)
    work = workspace(tmp_path)
    inputs = [argv[k + 1] for k, word in enumerate(argv[:-1])
              if word in ("--geometry", "--data", "--checkpoint", "--config", "--resume")]
    if tool == "ensemble":  # the subcommand's checkpoints are positional: the words before its first option
        inputs += list(itertools.takewhile(lambda word: not word.startswith("--"), argv[1:]))
    if any(not (work / path).exists() for path in inputs):
        pytest.skip(f"an input is made by an earlier README step: {inputs}")
    if tool in ("learn", "data.generate") and importlib.util.find_spec("tblite") is None:
        pytest.skip(f"{tool} labels with GFN2-xTB: needs the xtb extra (tblite)")
    for k, word in enumerate(argv[:-1]):
        if word in TINY:
            argv[k + 1] = TINY[word]
    if tool == "train":
        argv += ["--valid", "20", "--test", "20", "--train", "40", "--no-plots", "--no-progress"]
    if tool == "check":
        argv += ["--quick"]
    if tool == "learn":   # the last value of an option wins: one tiny round
        argv += ["--rounds", "1", "--select", "2", "--initial-frames", "10", "--test-frames", "5", "--md-steps", "20",
                 "--save-every", "4", "--temperatures", "300", "--ensemble", "2", "--features", "8", "--epochs", "1",
                 "--retrain-epochs", "1", "--batch-size", "16"]
    (work / "runs").mkdir()
    env = dict(os.environ, PYTHONPATH=str(ROOT), JAX_PLATFORMS=os.environ.get("JAX_PLATFORMS", "cpu"))
    done = subprocess.run([sys.executable, "-m", f"physnetjax.{tool}", *argv], cwd=work, env=env,
                          capture_output=True, text=True, timeout=1800)
    assert done.returncode in ((0, 1) if tool == "check" else (0,)), (
        f"README.md:{line}: python -m physnetjax.{tool} {' '.join(argv)} exited {done.returncode}:\n"
        f"{done.stderr[-3000:]}")
