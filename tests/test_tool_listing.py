"""``python -m physnetjax`` lists every command-line tool and points a tool given as an argument at its module."""

import argparse
import importlib
import importlib.util
import pathlib
import runpy
import subprocess
import sys

import pytest

from physnetjax.__main__ import SUBCOMMAND_MODULES, TOOLS, main

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "physnetjax"


def runnable_tools() -> set[str]:
    """Modules below physnetjax that run as a program: packages with a __main__.py, modules with one guard."""
    found = {path.parent.relative_to(PACKAGE).as_posix().replace("/", ".") for path in PACKAGE.rglob("__main__.py")}
    found |= {path.relative_to(PACKAGE).with_suffix("").as_posix().replace("/", ".")
              for path in PACKAGE.rglob("*.py") if path.name != "__main__.py"
              and 'if __name__ == "__main__":' in path.read_text() and "refuse_library_module(" not in path.read_text()}
    return found - {".", "physics.d3_data.convert"}  # the package itself; the maintainers' D3 table generator


def test_every_runnable_module_is_listed_and_every_listed_tool_exists():
    assert set(TOOLS) == runnable_tools()
    assert all(importlib.util.find_spec(f"physnetjax.{tool}") is not None for tool in TOOLS)


def test_the_listing_runs_as_a_module(tmp_path):
    result = subprocess.run([sys.executable, "-m", "physnetjax"], capture_output=True, text=True, cwd=tmp_path,
                            env={"PYTHONPATH": str(PACKAGE.parent), "PATH": "/usr/bin:/bin"}, timeout=120)
    assert result.returncode == 0 and result.stderr == "", result.stderr
    assert result.stdout.startswith("usage: python -m physnetjax.<tool> [options]")
    listed = [line.split()[0] for line in result.stdout.splitlines()[3:]]
    assert listed == list(TOOLS)


@pytest.mark.parametrize("argv, message", [
    (["train", "--epochs", "5", "--out", "my run"],
     "python -m physnetjax: error: the tools run as modules of their own: "
     "python -m physnetjax.train --epochs 5 --out 'my run'\n"),
    (["trian"], "python -m physnetjax: error: no tool 'trian'; the tools are train, eval, check, md, spectra, "
                "ensemble, learn, data.generate, migrate (python -m physnetjax.<tool>)\n"),
])
def test_a_tool_given_as_an_argument_is_named_not_run(capsys, argv, message):
    assert main(argv) == 2
    out, err = capsys.readouterr()
    assert out == "" and err == message


def subcommands(tool: str) -> list[str]:
    """The subcommands of ``python -m physnetjax.<tool>`` (none for a tool without them), from its parser."""
    tool_main = importlib.import_module(f"physnetjax.{tool}.__main__")
    if not hasattr(tool_main, "build_parser"):
        return []
    actions = [a for a in tool_main.build_parser()._actions if isinstance(a, argparse._SubParsersAction)]
    return [name for action in actions for name in action.choices]


@pytest.mark.filterwarnings("ignore:'physnetjax.spectra.harmonic' found in sys.modules:RuntimeWarning")  # runpy's
def test_every_library_module_named_like_a_subcommand_refuses_to_run_and_names_the_command(monkeypatch, capsys):
    named_like = {f"{tool}.{sub}": f"{tool} {sub}" for tool in TOOLS if (PACKAGE / tool).is_dir()
                  for sub in subcommands(tool) if importlib.util.find_spec(f"physnetjax.{tool}.{sub}") is not None}
    assert named_like == SUBCOMMAND_MODULES
    for module, command in named_like.items():
        monkeypatch.setattr(sys, "argv", ["-m", "--checkpoint", "my model", "--out", "x"])
        with pytest.raises(SystemExit) as stopped:
            runpy.run_module(f"physnetjax.{module}", run_name="__main__")
        assert stopped.value.code == 2
        out, err = capsys.readouterr()
        assert out == "" and err == (f"python -m physnetjax.{module}: error: this is a library module, not a tool; "
                                     f"the command is python -m physnetjax.{command} --checkpoint 'my model' --out x\n")


def test_a_library_module_run_with_m_exits_2_with_the_command(tmp_path):
    result = subprocess.run([sys.executable, "-m", "physnetjax.ensemble.combine", "a", "b", "--out", "c"],
                            capture_output=True, text=True, cwd=tmp_path, timeout=120,
                            env={"PYTHONPATH": str(PACKAGE.parent), "PATH": "/usr/bin:/bin", "JAX_PLATFORMS": "cpu"})
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.splitlines()[-1] == ("python -m physnetjax.ensemble.combine: error: this is a library module, "
                                              "not a tool; the command is python -m physnetjax.ensemble combine a b "
                                              "--out c")
