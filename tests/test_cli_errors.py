"""Every CLI answers an ordinary mistake with one line on stderr and a documented exit code (issue 17).

Each case below printed a raw traceback on main (or ran the expensive part first, or
left a half-made run directory). All of them fail before any model is compiled.
Permission-denied cases are represented by missing directories and files in place
of directories (the suite may run as root, for whom chmod does not deny).
"""

import errno
import json
import re

import ase.io
import ase.units
import jax
import numpy as np
import pytest
from ase import Atoms

from physnetjax import PhysNet, init_params, save_checkpoint
from physnetjax.check.__main__ import main as check_main
from physnetjax.cli_config import render
from physnetjax.cli_errors import (EXIT_INPUT, EXIT_INTERNAL, EXIT_OUTPUT, EXIT_RUN_STOPPED, Terminated, cli_main,
                                   exit_code, name_input)
from physnetjax.data import random_split, save_split
from physnetjax.data.generate import main as generate_main
from physnetjax.ensemble.__main__ import main as ensemble_main
from physnetjax.eval.cli import main as eval_main
from physnetjax.learn.__main__ import main as learn_main
from physnetjax.errors import OutputPathError, RunStoppedError
from physnetjax.md.__main__ import build_parser as md_parser
from physnetjax.md.__main__ import main as md_main
from physnetjax.migrate import main as migrate_main
from physnetjax.spectra.__main__ import main as spectra_main
from physnetjax.jsonlines import write_json
from physnetjax.train import TrainConfig
from physnetjax.train.cli import build_parser as build_train_parser
from physnetjax.train.cli import main as train_main
from physnetjax.validation import PhysNetInputError

from conftest import DATA

LEGACY_A = DATA / "legacy" / "A"


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A tiny checkpoint (H, C, O) and a water geometry."""
    jax.config.update("jax_enable_x64", True)
    root = tmp_path_factory.mktemp("cli")
    model = PhysNet(features=8, max_degree=1, num_iterations=1, num_basis_functions=8, cutoff=4.0,
                    max_atomic_number=9)
    save_checkpoint(root / "ckpt", model, init_params(model, 0))
    ase.io.write(root / "water.xyz", Atoms("OH2", positions=[[0, 0, 0], [0.96, 0, 0], [-0.24, 0.93, 0]]))
    ase.io.write(root / "sodium.xyz", Atoms("NaH2", positions=[[0, 0, 0], [0.96, 0, 0], [-0.24, 0.93, 0]]))
    ase.io.write(root / "atom.xyz", Atoms("O", positions=[[0, 0, 0]]))
    hydrogens = Atoms("HH", positions=[[0, 0, 0], [1.5, 0.1, 0]])  # flying head-on at 0.39 Å/fs
    hydrogens.set_velocities(np.array([[0.39, 0, 0], [-0.39, 0, 0]]) / ase.units.fs)
    ase.io.write(root / "head_on.extxyz", hydrogens)
    (root / "truncated.npz").write_bytes((DATA / "train_ethanol64.npz").read_bytes()[:2000])
    np.savez(root / "frames.npz", R=np.zeros((1, 3, 3)), Z=np.array([[8, 1, 1]]))
    water = dict(momenta=np.zeros((3, 3)), numbers=[8, 1, 1], step=10, heat=0.0)
    np.savez(root / "overlap.npz", positions=[[0, 0, 0], [0.96, 0, 0], [0.96, 0, 0]], **water)
    np.savez(root / "nan.npz", positions=[[0, 0, 0], [0.96, 0, 0], [np.nan, 0.93, 0]], **water)
    good = [[0, 0, 0], [0.96, 0, 0], [-0.24, 0.93, 0]]
    np.savez(root / "langevin.npz", positions=good, ensemble="langevin", **water)
    np.savez(root / "other_model.npz", positions=good, ensemble="nve", model="0" * 64, **water)
    (root / "template.toml").write_text(render(md_parser()))  # every option, those of other ensembles included
    return root


def one_line_error(capsys, prog: str) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert "Traceback" not in "\n".join(err)
    errors = [line for line in err if line.startswith(f"python -m physnetjax.{prog}: error: ")]
    assert len(errors) == 1, err
    return errors[0]


def test_exit_codes_follow_the_documented_table():
    assert exit_code(PhysNetInputError("x")) == exit_code(FileNotFoundError("x")) == EXIT_INPUT == 2
    assert exit_code(ModuleNotFoundError("matplotlib is needed for plots")) == EXIT_INPUT
    assert exit_code(OutputPathError("x")) == exit_code(FileExistsError("x")) == EXIT_OUTPUT == 3
    assert exit_code(RunStoppedError("x")) == exit_code(FloatingPointError("x")) == EXIT_RUN_STOPPED == 4
    assert exit_code(TypeError("x")) == EXIT_INTERNAL == 5


def test_verbose_prints_the_traceback(capsys):
    @cli_main("python -m physnetjax.demo")
    def main(argv=None):
        raise PhysNetInputError("bad thing")

    assert main([]) == 2
    assert capsys.readouterr().err.strip() == "python -m physnetjax.demo: error: bad thing"
    assert main(["--verbose"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" in err and err.strip().endswith("python -m physnetjax.demo: error: bad thing")


def os_error_naming_its_file_afterwards(text: str, filename: str) -> OSError:
    """``OSError(text)`` whose ``filename`` is set later: Python's str() prints it as ``[Errno None] None: 'FILE'``."""
    error = OSError(text)
    error.filename = filename
    return error


@pytest.mark.parametrize("error, code, line", [
    (KeyboardInterrupt(), 130, "python -m physnetjax.demo: interrupted"),
    (Terminated(), 143, "python -m physnetjax.demo: terminated (SIGTERM)"),
    (ZeroDivisionError("float division by zero"), 5,
     "python -m physnetjax.demo: internal error (ZeroDivisionError: float division by zero); please report it with "
     "the traceback that --verbose prints"),
    (RuntimeError(), 5, "python -m physnetjax.demo: internal error (RuntimeError: RuntimeError); please report"),
    (IsADirectoryError(21, "Is a directory", "out/run.xyz"), 3,
     "python -m physnetjax.demo: error: [Errno 21] Is a directory: 'out/run.xyz'"),
    (os_error_naming_its_file_afterwards("disk quota exceeded", "frames.npz"), 2,
     "python -m physnetjax.demo: error: frames.npz: disk quota exceeded"),
    (PhysNetInputError("bad\n   value  here"), 2, "python -m physnetjax.demo: error: bad value here"),
])
def test_interrupts_internal_errors_and_os_errors_are_one_line_with_their_exit_code(capsys, error, code, line):
    """Ctrl-C, a bug (any exception the table does not name) and an OS error naming its file: one line on stderr,
    no traceback, the documented exit code; whitespace in a message is folded into one line."""
    @cli_main("python -m physnetjax.demo")
    def main(argv=None):
        raise error

    assert main([]) == code
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.count("\n") == 1 and err.startswith(line), err


@pytest.mark.parametrize("main, argv, prog, message", [
    (md_main, [], "python -m physnetjax.md", "the following arguments are required: --geometry"),
    (md_main, ["--geometry", "x.xyz", "--steps", "ten"], "python -m physnetjax.md",
     "argument --steps: invalid int value: 'ten'"),
    (md_main, ["--config"], "python -m physnetjax.md", "argument --config: expected one argument"),
    (eval_main, [], "python -m physnetjax.eval", "the following arguments are required: --data"),
    (train_main, ["--epochs"], "python -m physnetjax.train", "argument --epochs: expected one argument"),
    (check_main, ["--bogus"], "python -m physnetjax.check", "unrecognized arguments: --bogus"),
    (migrate_main, [], "python -m physnetjax.migrate", "the following arguments are required"),
    (learn_main, ["--rounds", "two"], "python -m physnetjax.learn", "argument --rounds: invalid int value: 'two'"),
    (generate_main, ["--frames", "1.5"], "python -m physnetjax.data.generate",
     "argument --frames: invalid int value: '1.5'"),
    (spectra_main, [], "python -m physnetjax.spectra", "the following arguments are required: {harmonic,ir}"),
    (spectra_main, ["harmonic"], "python -m physnetjax.spectra harmonic",
     "the following arguments are required: --checkpoint, --geometry, --out"),
    (ensemble_main, ["merge"], "python -m physnetjax.ensemble",
     "argument {combine,calibrate}: invalid choice: 'merge'"),
])
def test_usage_errors_are_one_line_with_exit_code_2(capsys, main, argv, prog, message):
    """A missing, misspelt or malformed option: the one line every other error has, exit 2, and where to look
    (argparse printed its usage block first, 20 lines of every option for md, above the line that said what was
    wrong)."""
    with pytest.raises(SystemExit) as stop:
        main(argv)
    assert stop.value.code == EXIT_INPUT
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "usage:" not in err, err
    assert err.startswith(f"{prog}: error: {message}"), err
    assert err.rstrip().endswith(f"({prog} --help lists the options)"), err


@pytest.mark.parametrize("module, hint", [
    ("physnetjax.learn.__main__", "interrupted; rerun the same command to continue: finished rounds are kept, "
                                  "the interrupted one is redone"),
    ("physnetjax.train.cli", "interrupted; no run was started: rerun the same command"),
])
def test_an_interrupted_run_says_how_to_continue(monkeypatch, capsys, module, hint):
    """After Ctrl-C `learn` and `train` printed only 'interrupted' (exit 130): nothing said that rerunning the same
    command continues the loop, or that --resume continues the training run."""
    import importlib

    cli = importlib.import_module(module)

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli.argparse.ArgumentParser, "parse_args", interrupted)
    assert cli.main([]) == 130
    assert capsys.readouterr().err.strip().endswith(hint)


@pytest.mark.parametrize("checkpoint", [True, False])
def test_an_interrupted_training_names_its_run_directory(monkeypatch, capsys, tmp_path, checkpoint):
    """Ctrl-C during training printed '--resume RUN_DIR' literally, whatever directory the run had (a default one is
    runs/physnet-DATE-TIME), and also when no checkpoint existed to resume from."""
    from physnetjax.train import loop
    from physnetjax.train.cli import main

    def interrupted_training(config, on_start=None, **kwargs):
        run_dir = tmp_path / "runs" / "physnet-20261204-231500"
        run_dir.mkdir(parents=True)
        on_start(config, run_dir)
        if checkpoint:
            (run_dir / "latest").symlink_to(run_dir)
        raise KeyboardInterrupt

    monkeypatch.setattr(loop, "train", interrupted_training)
    assert main(["--epochs", "1"]) == 130
    run_dir = tmp_path / "runs" / "physnet-20261204-231500"
    hint = (f"continue from the last checkpoint with: python -m physnetjax.train --resume {run_dir}" if checkpoint
            else f"{run_dir} holds no checkpoint yet: rerun the same command to start over")
    assert capsys.readouterr().err.strip() == f"python -m physnetjax.train: interrupted; {hint}"


@pytest.mark.parametrize("verbose, expected", [
    (False, ["python -m physnetjax.demo: warning: no energy rank correlation: all spreads equal"]),
    (True, ["INFO physnetjax.demo: round 1 of 3", "WARNING physnetjax.demo: no energy rank correlation:\n  all "
                                                  "spreads equal"]),
])
def test_log_records_of_a_cli_run_read_like_its_warnings(capsys, verbose, expected):
    """calibrate, learn and md printed their log warnings as 'WARNING:physnetjax.learn.loop:...' (logging's default
    form) beside 'PROG: warning: ...' lines; with --verbose the logger's name says which module spoke."""
    import logging

    from physnetjax.cli_errors import configure_logging

    root = logging.getLogger()
    before = (root.level, list(root.handlers))
    try:
        configure_logging("python -m physnetjax.demo", verbose)
        logger = logging.getLogger("physnetjax.demo")
        logger.info("round 1 of 3")
        logger.warning("no energy rank correlation:\n  all spreads equal")
    finally:
        root.handlers[:] = before[1]
        root.setLevel(before[0])
    assert capsys.readouterr().err.rstrip("\n").split("\n") == [line for text in expected for line in text.split("\n")]


def test_warnings_are_one_line_during_a_cli_call():
    """Inside a CLI call a warning prints as ``PROG: warning: MESSAGE``; --verbose and code outside keep Python's form."""
    import warnings

    formatted = []

    @cli_main("python -m physnetjax.demo")
    def main(argv=None):
        formatted.append(warnings.formatwarning("odd input", UserWarning, "/x/module.py", 7, "call(here)"))
        return 0

    python_form = warnings.formatwarning("odd input", UserWarning, "/x/module.py", 7, "call(here)")
    assert main([]) == 0 and main(["--verbose"]) == 0
    assert formatted == ["python -m physnetjax.demo: warning: odd input\n", python_form]
    assert warnings.formatwarning("odd input", UserWarning, "/x/module.py", 7, "call(here)") == python_form


@pytest.mark.parametrize("case", [
    dict(args=["--checkpoint", "{root}/nowhere"], code=2, match="does not exist"),
    dict(args=["--geometry", "{root}/missing.xyz"], code=2, match="missing.xyz"),
    dict(args=["--geometry", "{root}/ckpt/config.json"], code=2, match="ASE cannot read it"),
    dict(args=["--out", "{root}/no_dir/traj.xyz"], code=3, match="no_dir does not exist"),
    dict(args=["--out", "{root}/water.xyz/traj.xyz"], code=3, match="water.xyz is a file, not a directory"),
    dict(args=["--temperature", "inf"], code=2, match="--temperature must be finite and >= 0 K, received inf"),
    # Outputs over inputs or over each other: main wrote the checkpoint's zip over the trajectory (or the geometry)
    # and exited 0.
    dict(args=["--out", "{root}/same.xyz", "--md-checkpoint", "{root}/same.xyz"], code=3,
         match=r"--out and --md-checkpoint are the same file .*same.xyz: give them different paths"),
    dict(args=["--out", "{root}/log.xyz", "--md-checkpoint", "{root}/log.xyz.jsonl"], code=3,
         match=r"its log and --md-checkpoint are the same file"),
    dict(args=["--out", "{root}/water.xyz"], code=3,
         match=r"--out .*water.xyz is also --geometry: writing it would replace the input; give --out another path"),
    dict(args=["--md-checkpoint", "{root}/ckpt/state.npz"], code=3,
         match=r"--md-checkpoint .*state.npz is inside --checkpoint .*ckpt: writing it would change --checkpoint"),
    dict(args=["--geometry", "{root}/sodium.xyz"], code=2, match=r"Na \(Z=11\) at atom\(s\) 0 are outside"),
    dict(args=["--geometry", "{root}/atom.xyz"], code=2, match="MD needs at least 2 atoms, the start geometry has 1"),
    dict(args=["--restart", "{root}/truncated.npz"], code=2, match=r"restart file .*truncated.npz cannot be read as .npz"),
    dict(args=["--restart", "{root}/frames.npz"], code=2,
         match=r"frames.npz is not an MD-state checkpoint .*: missing positions, momenta, numbers, step"),
    dict(args=["--restart", "{root}/overlap.npz"], code=2, match=r"overlap.npz: atoms overlap: atoms 1-2 at 0 Å"),
    dict(args=["--restart", "{root}/nan.npz"], code=2, match=r"nan.npz: positions contain NaN or Inf at atom\(s\) 2"),
    # Options the ensemble does not use (main ran and ignored them) and restarts of another ensemble or model.
    dict(args=["--friction", "0.1"], code=2,
         match=r"error: --ensemble nve \(the default\) does not use --friction \(langevin only\): remove it or"),
    dict(args=["--ensemble", "nve", "--pressure", "5", "--friction", "0.1"], code=2,
         match=r"--ensemble nve does not use --friction \(langevin only\), --pressure \(npt only\): remove them"),
    dict(args=["--ensemble", "langevin", "--temperature-end", "400", "--chain-length", "4"], code=2,
         match=r"--ensemble langevin does not use --temperature-end \(nvt-nhc / csvr / npt only\), --chain-length "
               r"\(nvt-nhc only\)"),
    dict(args=["--ensemble", "csvr", "--on-energy-drift", "warn"], code=2, match=r"--on-energy-drift \(nve only\)"),
    dict(args=["--restart", "{root}/langevin.npz"], code=2,
         match=r"--restart .*langevin.npz continues a langevin run, not --ensemble nve \(the default\): pass "
               r"--ensemble langevin"),
    dict(args=["--restart", "{root}/other_model.npz"], code=2,
         match=r"--restart .*other_model.npz was written by a run of another model than --checkpoint .*ckpt"),
    # Meaningful combinations pass the check (and fail later, on the geometry, before any step).
    dict(args=["--ensemble", "npt", "--pressure", "5", "--anisotropic", "--thermostat-time", "50"], code=2,
         match=r"error: --ensemble npt needs a fully periodic cell, but the start geometry is isolated \(no pbc\): "
               "give one with a cell and pbc all True, or choose another --ensemble$"),  # main: ensemble 'npt' needs
    dict(args=["--ensemble", "nve", "--temperature", "500", "--geometry", "{root}/sodium.xyz"], code=2,
         match=r"Na \(Z=11\)"),
    dict(args=["--config", "{root}/template.toml", "--geometry", "{root}/sodium.xyz"], code=2, match=r"Na \(Z=11\)"),
])
def test_md_cli(files, capsys, case):
    args = ["--checkpoint", str(files / "ckpt"), "--geometry", str(files / "water.xyz"), "--steps", "10",
            "--save-every", "5"] + [a.format(root=files) for a in case["args"]]
    assert md_main(args) == case["code"]
    line = one_line_error(capsys, "md")
    assert re.search(case["match"], line), line


@pytest.mark.parametrize("geometry, out, match", [
    ("run.xyz.last_good.xyz", "run.xyz", r"its last good frame .*run.xyz.last_good.xyz is also --geometry"),
    ("run.xyz.last_trusted.xyz", "run.xyz", r"its last trusted frame .*run.xyz.last_trusted.xyz is also --geometry"),
    ("start.xyz", "linked.xyz", r"--out .*linked.xyz is also --geometry .*start.xyz \(another name of the same "
                                r"file\): writing it would replace the input"),
])
def test_md_refuses_outputs_that_are_its_geometry_by_another_name(files, tmp_path, capsys, geometry, out, match):
    """A restart of a blown-up run from OUT.last_good.xyz with the same --out overwrote that geometry with the new
    run's last good frame; a hard link to the geometry given as --out was replaced by the trajectory (exit 0)."""
    import os
    import shutil

    shutil.copy(files / "water.xyz", tmp_path / geometry)
    if out == "linked.xyz":
        os.link(tmp_path / geometry, tmp_path / out)
    before = (tmp_path / geometry).read_bytes()
    args = ["--checkpoint", str(files / "ckpt"), "--geometry", str(tmp_path / geometry), "--steps", "10",
            "--save-every", "5", "--out", str(tmp_path / out)]
    assert md_main(args) == 3
    assert re.search(match, one_line_error(capsys, "md"))
    assert (tmp_path / geometry).read_bytes() == before


def test_md_restarting_from_its_own_checkpoint_file_may_rewrite_it_at_its_timestep(files, tmp_path, capsys):
    """--restart X --md-checkpoint X continues a run and keeps checkpointing to the same file: allowed. Another
    --timestep is refused: the times written count steps (a 0.5 fs run continued at 1 fs jumped from 20.5 to 41 ps)."""
    state = tmp_path / "state.npz"
    common = ["--checkpoint", str(files / "ckpt"), "--geometry", str(files / "water.xyz"), "--steps", "10",
              "--save-every", "5", "--md-checkpoint", str(state), "--on-energy-drift", "warn"]  # an untrained model
    assert md_main(common + ["--timestep", "0.25"]) == 0
    assert md_main(common + ["--restart", str(state), "--timestep", "0.25"]) == 0
    capsys.readouterr()
    assert md_main(common + ["--restart", str(state)]) == 2
    assert re.search(r"restart file .*state.npz was run with --timestep 0.25 fs, not 0.5 fs: .* continue it with "
                     r"--timestep 0.25$", one_line_error(capsys, "md"))


def test_a_refused_md_run_leaves_the_settings_of_the_run_before(files, tmp_path, capsys):
    """A run refused on its geometry (overlapping atoms) rewrote OUT.config.toml beside the earlier run's
    trajectory, which it then described with the refused run's settings."""
    out = tmp_path / "run.xyz"
    overlap = tmp_path / "overlap.xyz"
    ase.io.write(overlap, Atoms("OH2", positions=[[0, 0, 0], [0.96, 0, 0], [0.96, 0, 0]]))
    common = ["--checkpoint", str(files / "ckpt"), "--steps", "10", "--save-every", "5", "--out", str(out),
              "--on-energy-drift", "warn"]  # an untrained model
    assert md_main(common + ["--geometry", str(files / "water.xyz"), "--temperature", "123"]) == 0
    settings = (tmp_path / "run.xyz.config.toml").read_text()
    assert "temperature = 123.0" in settings
    assert md_main(common + ["--geometry", str(overlap), "--temperature", "999"]) == 2
    assert "atoms overlap" in one_line_error(capsys, "md")
    assert (tmp_path / "run.xyz.config.toml").read_text() == settings


def test_eval_and_check_refuse_to_write_over_their_inputs(files, tmp_path, capsys):
    """eval's predictions over its --data replaced the labels (a second eval then reported energy MAE 0); check's
    --json over a geometry or into the checkpoint (its config.json) destroyed it. Both exit 3, nothing written."""
    data = tmp_path / "frames.extxyz"
    ase.io.write(data, ase.io.read(files / "water.xyz"))
    before = data.read_bytes()
    assert eval_main(["--checkpoint", str(files / "ckpt"), "--data", str(data), "--write-predictions", str(data)]) == 3
    assert re.search(r"--write-predictions .*frames.extxyz is also --data", one_line_error(capsys, "eval"))
    assert data.read_bytes() == before
    config = files / "ckpt" / "config.json"
    saved = config.read_bytes()
    assert check_main([str(files / "ckpt"), "--json", str(config)]) == 3
    assert re.search(r"--json .*config.json is inside --checkpoint", one_line_error(capsys, "check"))
    assert check_main([str(files / "ckpt"), "--geometry", str(data), "--json", str(data)]) == 3
    assert re.search(r"--json .*frames.extxyz is also --geometry", one_line_error(capsys, "check"))
    assert config.read_bytes() == saved and data.read_bytes() == before
    missing = tmp_path / "missing.extxyz"  # a missing input is named as missing, not as one an output would replace
    assert eval_main(["--checkpoint", str(files / "ckpt"), "--data", str(missing), "--write-predictions",
                      str(missing)]) == 2
    assert one_line_error(capsys, "eval").endswith(f"--data {missing} does not exist")


def test_md_cli_draws_its_progress_bar_only_once_the_run_starts(files, capsys):
    """A geometry refused by simulate's checks leaves the error alone on stderr (the bar was drawn at 0 steps
    before it); a run that starts ends with the whole bar."""
    base = ["--checkpoint", str(files / "ckpt"), "--steps", "10", "--save-every", "5"]
    assert md_main(base + ["--geometry", str(files / "sodium.xyz")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("python -m physnetjax.md: error: ") and "Na (Z=11)" in err[0], err
    assert md_main(base + ["--geometry", str(files / "water.xyz"), "--energy-tolerance", "1e4"]) == 0
    assert "10/10 steps" in capsys.readouterr().err


@pytest.mark.parametrize("args, message", [  # main named simulate's keyword (or nothing) in each of these
    (["--temperature", "-5"], "--temperature must be finite and >= 0 K, received -5.0"),  # main: temperature_K
    (["--timestep", "0"], "--timestep must be finite and > 0 fs, received 0.0"),  # main: timestep_fs
    (["--ensemble", "langevin", "--friction", "0"], "--friction must be finite and > 0 fs^-1, received 0.0"),
    (["--max-force", "0"], "--max-force must be finite and > 0 eV/Å, received 0.0"),  # main: max_force
    (["--skin", "-1"], "--skin must be finite and >= 0 Å, received -1.0"),
    # main: "edge_chunk_size must be >= 1 or None, received 0", the model's field, once the model was loaded
    (["--edge-chunk-size", "0"], "--edge-chunk-size must be >= 1 (message-pass edges per chunk), received 0"),
    (["--chunk", "0"], "--chunk must be an integer >= 1 (saved frames per jitted chunk), received 0"),
    (["--steps", "15", "--save-every", "10"], "--steps (15) must be a positive multiple of --save-every (10)"),
    (["--save-every", "0"], "--save-every must be an integer >= 1 (steps between saved frames), received 0"),
    # main: "chain_length and chain_steps must be >= 1, received 0, 1", raised inside simulate (no chain_steps option)
    (["--ensemble", "nvt-nhc", "--chain-length", "0"], "--chain-length must be an integer >= 1"),
    # main: "temperature must be > 0 K for a Nosé–Hoover chain"
    (["--ensemble", "nvt-nhc", "--temperature", "0"], "--temperature must be > 0 K for --ensemble nvt-nhc"),
    # main: "thermostat time must be > 0 fs", "temperature_end must be >= 0 K", "barostat time must be > 0 fs"
    (["--ensemble", "csvr", "--thermostat-time", "0"], "--thermostat-time must be finite and > 0 fs, received 0.0"),
    (["--ensemble", "csvr", "--temperature-end", "-1"], "--temperature-end must be finite and >= 0 K, received -1.0"),
    (["--ensemble", "npt", "--barostat-time", "0"], "--barostat-time must be finite and > 0 fs, received 0.0"),
    (["--ensemble", "npt", "--compressibility", "0"], "--compressibility must be finite and > 0 bar^-1, received 0.0"),
    # main: "on_energy_drift must be one of ('stop', 'warn') and energy_tolerance > 0, received 'stop', 0.0"
    (["--energy-tolerance", "0"], "--energy-tolerance must be > 0 meV/atom, received 0.0"),
    (["--energy-tolerance", "nan"], "--energy-tolerance must be > 0 meV/atom, received nan"),
    # main: "uncertainty threshold must be > 0 eV/Å" (after loading the model), "an uncertainty threshold needs ..."
    (["--uncertainty-threshold", "-1"], "--uncertainty-threshold must be finite and > 0 eV/Å, received -1.0"),
    (["--uncertainty-threshold", "0.1"], "--uncertainty-threshold needs an ensemble"),
    # main: "MD start geometry: total_charge must be finite, received nan", "... total_charge 100 e is larger ..."
    (["--total-charge", "nan"], "--total-charge must be finite, received nan"),
    (["--total-charge", "100"], "--total-charge 100 e is larger than the number of electrons of the neutral "
                                "structure (ΣZ = 10)"),
    (["--out", "{root}/run.pdb"], "--out {root}/run.pdb: a trajectory file must end in one of ['.extxyz', '.traj', "
                                  "'.xyz']"),  # main: "trajectory file must end in ..., received '.../run.pdb'"
])
def test_md_cli_range_errors_name_the_option(files, capsys, args, message):
    """A value out of range is named by the option the user typed, not by simulate's keyword; exit 2, before any MD."""
    base = ["--checkpoint", str(files / "ckpt"), "--geometry", str(files / "water.xyz"), "--steps", "10",
            "--save-every", "5"]
    assert md_main(base + [arg.format(root=files) for arg in args]) == 2
    assert f"md: error: {message.format(root=files)}" in one_line_error(capsys, "md")


@pytest.mark.parametrize("args, message", [
    # main: "start geometry has |F| = 17.9 eV/Å > max_force = 1e-06 eV/Å", simulate's keyword
    (["--max-force", "1e-6"], r"error: start geometry has \|F\| = [\d.]+ eV/Å > --max-force 1e-06 eV/Å$"),
    # main: "max |F| = 22.5 eV/Å > max_force = 20.0 eV/Å"
    (["--geometry", "{root}/head_on.extxyz", "--steps", "60", "--save-every", "1", "--timestep", "0.05",
      "--energy-tolerance", "1e9", "--max-force", "20"],
     r"error: MD stopped at step 26: max \|F\| = 22.5 eV/Å > --max-force 20.0 eV/Å\. Last good frame \(step 25\)"),
    # main: "(> energy_tolerance = 1e-09 meV/atom); use a smaller --timestep (or --energy-tolerance / ...)"
    (["--energy-tolerance", "1e-9"], r"meV/atom from its start value \(> --energy-tolerance 1e-09 meV/atom\); use a "
                                     r"smaller --timestep \(or a larger --energy-tolerance, or --on-energy-drift "
                                     r"warn\)\. Last good frame"),
])
def test_md_cli_stop_messages_name_the_options(files, capsys, args, message):
    """A run stopped by --max-force or --energy-tolerance says so by the option (exit 4); from Python by keyword."""
    base = ["--checkpoint", str(files / "ckpt"), "--geometry", str(files / "water.xyz"), "--steps", "10",
            "--save-every", "5"]
    assert md_main(base + [arg.format(root=files) for arg in args]) == 4
    line = one_line_error(capsys, "md")
    assert re.search(message, line), line


def test_md_python_api_stop_messages_name_the_keywords(files):
    from physnetjax.checkpoint import load_checkpoint
    from physnetjax.md.driver import MDInstabilityError, simulate

    model, params = load_checkpoint(files / "ckpt")
    with pytest.raises(MDInstabilityError, match=r"> max_force=1e-06 eV/Å$"):
        simulate(model, params, ase.io.read(files / "water.xyz"), steps=10, save_every=5, max_force=1e-6)


@pytest.mark.parametrize("args, message", [
    # main: exit 0, a csvr / Nosé–Hoover run without a thermostat (relaxation time inf), an NPT run without a barostat
    (["--ensemble", "csvr", "--thermostat-time", "inf"], "--thermostat-time must be finite and > 0 fs, received inf"),
    (["--ensemble", "nvt-nhc", "--thermostat-time", "inf"], "--thermostat-time must be finite and > 0 fs"),
    (["--ensemble", "npt", "--barostat-time", "inf"], "--barostat-time must be finite and > 0 fs, received inf"),
    # main: exit 4, "MD stopped at step 5: NaN/Inf in energy, positions or forces"
    (["--ensemble", "csvr", "--temperature-end", "inf"], "--temperature-end must be finite and >= 0 K, received inf"),
    (["--ensemble", "npt", "--pressure", "nan"], "--pressure must be a finite number of bar, received nan"),
    (["--ensemble", "npt", "--pressure-end", "inf"], "--pressure-end must be a finite number of bar, received inf"),
    # main: a periodic cell collapsed to NaN within the first chunk, exit 4 ("the neighbor lists overflowed")
    (["--ensemble", "npt", "--pressure", "1e16"], "--pressure must be within ±1e+08 bar (10 TPa: P × 1 Å³ = 62 eV "
                                                  "there, beyond any chemistry), received 1e+16: is it in bar?"),
    (["--ensemble", "npt", "--compressibility", "inf"], "--compressibility must be finite and > 0 bar^-1"),
])
def test_md_cli_refuses_non_finite_ensemble_settings(files, capsys, args, message):
    """An infinite relaxation time switched the thermostat or barostat off without a word; a NaN or infinite
    pressure, ramp end or compressibility, or a pressure beyond 1e8 bar, ran into NaN and read as an unstable model.
    Refused before any MD."""
    base = ["--checkpoint", str(files / "ckpt"), "--geometry", str(files / "water.xyz"), "--steps", "10",
            "--save-every", "5"]
    assert md_main(base + args) == 2
    assert f"md: error: {message}" in one_line_error(capsys, "md")


MISSING_INPUTS = [  # (tool, main, arguments, the error), {root}: the fixture's files; run in an empty directory
    ("md", md_main, ["--geometry", "missing.xyz"], "--geometry missing.xyz does not exist"),
    ("md", md_main, ["--geometry=missing.xyz"], "--geometry missing.xyz does not exist"),
    ("md", md_main, ["--geometry", "{root}/water.xyz", "--config", "missing.toml"],
     "--config missing.toml does not exist"),
    ("md", md_main, ["--geometry", "{root}/water.xyz", "--checkpoint", "missing"],
     "--checkpoint missing does not exist"),
    ("md", md_main, ["--geometry", "{root}/water.xyz", "--checkpoint", "{root}/ckpt", "--restart", "missing.npz",
                     "--steps", "10", "--save-every", "5"], "--restart missing.npz does not exist"),
    ("md", md_main, ["--config", "geometry.toml"],
     "--geometry missing.xyz (from --config geometry.toml) does not exist"),
    ("train", train_main, ["--data", str(DATA / "train_ethanol64.npz"), "missing.npz", "--out", "run"],
     "--data missing.npz does not exist"),
    ("train", train_main, ["--data", str(DATA / "train_ethanol64.npz"), "--split-file", "missing.npz", "--out", "run"],
     "--split-file missing.npz does not exist"),
    ("train", train_main, ["--init-from", "missing", "--out", "run"], "--init-from missing does not exist"),
    ("eval", eval_main, ["--checkpoint", "{root}/ckpt", "--data", "missing.npz"], "--data missing.npz does not exist"),
    ("check", check_main, ["{root}/ckpt", "--geometry", "missing.xyz", "--quick"],
     "--geometry missing.xyz does not exist"),
    ("check", check_main, ["missing", "--quick"], "missing does not exist"),
    ("spectra", spectra_main, ["harmonic", "--checkpoint", "{root}/ckpt", "--geometry", "missing.xyz", "--out", "o"],
     "--geometry missing.xyz does not exist"),
    ("learn", learn_main, ["--data", "missing.npz", "--out", "run"], "--data missing.npz does not exist"),
    ("ensemble", ensemble_main, ["combine", "{root}/ckpt", "missing", "--out", "ens"], "missing does not exist"),
]


@pytest.mark.parametrize("tool, main, args, message", MISSING_INPUTS,
                         ids=[f"{case[0]} {case[3].split(' does')[0]}" for case in MISSING_INPUTS])
def test_a_missing_input_is_named_by_its_option(files, tmp_path, monkeypatch, capsys, tool, main, args, message):
    """On main: "[Errno 2] No such file or directory: 'missing.xyz'" (md, train, config files), "/abs/missing does
    not exist" (checkpoints), "missing.npz: no such file" (eval, learn) or an ASE error (check): no option named."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "geometry.toml").write_text('geometry = "missing.xyz"\n')
    assert main([a.format(root=files) for a in args]) == 2
    assert one_line_error(capsys, tool) == f"python -m physnetjax.{tool}: error: {message}"
    assert [p.name for p in tmp_path.iterdir()] == ["geometry.toml"]  # no output directory left behind


STRUCTURE_DIRECTORIES = [
    ("md", md_main, ["--geometry", "inp"], "--geometry inp"),
    ("spectra", spectra_main, ["harmonic", "--checkpoint", "{root}/ckpt", "--geometry", "inp", "--out", "o"],
     "--geometry inp"),
]


@pytest.mark.parametrize("tool, main, args, named", STRUCTURE_DIRECTORIES,
                         ids=[case[0] for case in STRUCTURE_DIRECTORIES])
def test_a_directory_given_for_a_structure_file_is_named_as_one(files, tmp_path, monkeypatch, capsys, tool, main,
                                                                args, named):
    """A folder for a structure file was "ASE cannot read it (OSError: Not a BundleTrajectory: inp)"."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "inp").mkdir()
    assert main([a.format(root=files) for a in args]) == 2
    assert one_line_error(capsys, tool) == (f"python -m physnetjax.{tool}: error: {named}: it is a directory, not a "
                                            "file: give the file in it (ASE: OSError: Not a BundleTrajectory: inp)")


DATA_DIRECTORIES = [
    ("train", train_main, ["--data", "inp", "--out", "run", "--no-progress"], "--data inp"),
    ("eval", eval_main, ["--checkpoint", "{root}/ckpt", "--data", "inp"], "--data inp"),
    ("learn", learn_main, ["--data", "inp", "--out", "run"], "--data inp"),
    ("learn", learn_main, ["--test", "inp", "--out", "run"], "--test inp"),
]


@pytest.mark.parametrize("tool, main, args, named", DATA_DIRECTORIES, ids=[case[3] for case in DATA_DIRECTORIES])
def test_a_directory_given_for_a_data_file_is_named_with_its_option(files, tmp_path, monkeypatch, capsys, tool, main,
                                                                    args, named):
    """train --data inp was "[Errno 21] Is a directory: 'inp'" with exit 3 (an output's code), eval and learn said
    "inp: it is a directory, not a file: give the file in it (ASE: OSError: Not a BundleTrajectory: inp)" without
    the option."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "inp").mkdir()
    assert main([a.format(root=files) for a in args]) == 2
    assert one_line_error(capsys, tool) == (f"python -m physnetjax.{tool}: error: {named}: it is a directory, not a "
                                            "data file: give a file in it (.npz, or a structure file ASE reads such "
                                            "as .extxyz)")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["inp"]


BAD_DATA_FILES = [
    ("train", train_main, ["--data", "{bad}", "--out", "run", "--no-progress"], "--data {bad}"),
    ("eval", eval_main, ["--checkpoint", "{root}/ckpt", "--data", "{bad}"], "--data {bad}"),
    ("learn", learn_main, ["--data", "{bad}", "--out", "run"], "--data {bad}"),
]


@pytest.mark.parametrize("tool, main, args, named", BAD_DATA_FILES, ids=[case[0] for case in BAD_DATA_FILES])
def test_an_unreadable_data_file_is_named_with_its_option(files, tmp_path, monkeypatch, capsys, tool, main, args,
                                                          named):
    """"inp/a.npz: cannot read as .npz: ..." named the file, not the option that gave it."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "inp").mkdir()
    (tmp_path / "inp" / "a.npz").write_bytes(b"not a zip archive")
    bad = "inp/a.npz"
    assert main([a.format(root=files, bad=bad) for a in args]) == 2
    assert one_line_error(capsys, tool) == (f"python -m physnetjax.{tool}: error: {named.format(bad=bad)}: cannot "
                                            "read as .npz: not an .npz file (it is not a zip archive)")


def test_a_message_beginning_with_a_given_path_names_its_option(tmp_path, monkeypatch, capsys):
    """The path as given or by another spelling is named; a path no option gave, a missing one and a word that is no
    path (an option's value like ``--ensemble nve``) are left as they are."""
    @cli_main("python -m physnetjax.demo")
    def main(argv=None):
        name_input("data/a.npz", "--data data/a.npz (from --config run.toml)")
        name_input("nve", "--ensemble nve")
        raise PhysNetInputError(f"{argv[0]}: bad frame 3")

    monkeypatch.chdir(tmp_path)
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "a.npz").write_bytes(b"")
    (tmp_path / "other.npz").write_bytes(b"")
    for given, shown in [("data/a.npz", "--data data/a.npz (from --config run.toml)"),
                         (str(tmp_path / "data" / "a.npz"), "--data data/a.npz (from --config run.toml)"),
                         ("other.npz", "other.npz"), ("data/b.npz", "data/b.npz"), ("nve", "nve")]:
        assert main([given]) == 2
        assert capsys.readouterr().err.strip() == f"python -m physnetjax.demo: error: {shown}: bad frame 3"


def test_a_missing_input_spelled_otherwise_is_named_too(tmp_path, monkeypatch, capsys):
    """The library may report the path resolved (``/abs/missing.npz``); the option that named it is still found."""
    @cli_main("python -m physnetjax.demo")
    def main(argv=None):
        name_input("data/../missing.npz", "--data data/../missing.npz")
        raise FileNotFoundError(errno.ENOENT, "No such file or directory", str(tmp_path / "missing.npz"))

    monkeypatch.chdir(tmp_path)
    (tmp_path / "data").mkdir()
    assert main([]) == 2
    error = "python -m physnetjax.demo: error: --data data/../missing.npz does not exist"
    assert capsys.readouterr().err.strip() == error
    name_input("other.npz", "--data other.npz")  # outside a call: nothing is kept for the next one


def _bad_npz(root, kind):
    path = root / f"{kind}.npz"
    good = DATA / "train_ethanol64.npz"
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "truncated":
        path.write_bytes(good.read_bytes()[:2000])
    elif kind == "corrupt":
        path.write_bytes(np.random.default_rng(0).bytes(4096))
    elif kind == "zero_frames":
        np.savez(path, R=np.zeros((0, 3, 3)), Z=np.zeros((0, 3), int), E=np.zeros(0))
    return path


@pytest.mark.parametrize("kind,match", [("empty", "cannot read as .npz: the file is empty"),
                                         ("truncated", "cannot read as .npz: a damaged or truncated .npz"),
                                         ("corrupt", "cannot read as .npz: not an .npz file"),
                                         ("zero_frames", "holds no frames")])
def test_train_cli_bad_data_leaves_no_run_directory(tmp_path, capsys, kind, match):
    out = tmp_path / "runs" / "x"
    assert train_main(["--data", str(_bad_npz(tmp_path, kind)), "--out", str(out), "--no-progress"]) == 2
    assert match in one_line_error(capsys, "train")
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("options,message", [
    (["--valid", "1.5"], "--valid 1.5 is neither a fraction < 1 nor a whole number of frames; use e.g. --valid 0.15 "
                         "(fraction) or --valid 2 (frames)"),  # main: "valid=1.5 is neither ..."
    (["--valid", "inf"], "--valid must be a finite number >= 0 (a fraction < 1 or a whole number of frames), received "
                         "inf"),  # main: internal error (OverflowError), exit 5
    (["--test", "nan"], "--test must be a finite number >= 0 (a fraction < 1 or a whole number of frames), received "
                        "nan"),  # main: "test must be >= 0, received nan"
    # main: "cannot split 64 frames into train=58, valid=0, test=6: ... valid=0.001 gives none, ... such as valid=1"
    (["--valid", "0.001"], "cannot split 64 frames: the validation split needs at least 1 frame (it selects the best "
                           "checkpoint); --valid 0.001 gives none, give a frame count such as --valid 1"),
    (["--valid", "40", "--test", "40"], "cannot split 64 frames: 40 validation and 40 test frames leave none to "
                                        "train on; lower --valid or --test"),  # main: "train=-16, ... lower valid"
])
def test_train_cli_refused_split_leaves_no_run_and_retry_works_the_same(tmp_path, capsys, options, message):
    out = tmp_path / "run"
    for _ in range(2):
        assert train_main(["--data", str(DATA / "train_ethanol64.npz"), "--out", str(out), *options]) == 2
        assert one_line_error(capsys, "train").endswith(f"train: error: {message}")
        assert not out.exists()


@pytest.mark.parametrize("tool", ["train", "learn"])
@pytest.mark.parametrize("below", [False, True])
def test_run_directory_clis_refuse_an_out_through_a_file_before_reading_data(tmp_path, capsys, tool, below):
    """On main, train: "[Errno 20] Not a directory: '.../f.txt/run'" (exit 2) and "[Errno 17] File exists:
    '.../f.txt'"; learn: the start frames were read, then "[Errno 20] …" (exit 2), and an --out that is a file was
    refused as bad input (exit 2) rather than as output (3)."""
    main, that_is_a_file = {"train": (train_main, ""), "learn": (learn_main, ": give the run directory")}[tool]
    blocker = tmp_path / "f.txt"
    blocker.write_text("")
    out = blocker / "run" if below else blocker
    assert main(["--data", str(tmp_path / "missing.npz"), "--out", str(out)]) == 3
    expected = (f"--out {out}: {blocker} is a file, not a folder the directory can be created in; choose another "
                "--out" if below else f"--out {out} exists and is not a directory{that_is_a_file}")
    assert f"error: {expected}" in one_line_error(capsys, tool)
    assert blocker.read_text() == ""


def test_migrate_cli(files, tmp_path, capsys):
    existing = tmp_path / "existing"
    existing.mkdir()
    assert migrate_main([str(LEGACY_A), str(existing)]) == 3
    assert "exists; pass --overwrite" in one_line_error(capsys, "migrate")
    truncated = tmp_path / "g.npz"
    truncated.write_bytes((DATA / "molecules.npz").read_bytes()[:500])
    assert migrate_main([str(LEGACY_A), str(tmp_path / "new"), "--geometries", str(truncated)]) == 2
    assert "cannot be read as .npz" in one_line_error(capsys, "migrate")
    assert migrate_main([str(DATA / "molecules.npz"), str(tmp_path / "new")]) == 2
    line = one_line_error(capsys, "migrate")
    assert "pickle file" not in line and "an .npz holds arrays" in line
    assert not (tmp_path / "new").exists()


@pytest.mark.parametrize("mode", [0o644, 0o755])
def test_migrate_cli_refuses_a_new_path_below_a_file_before_migrating(tmp_path, capsys, mode):
    """On main: "directory .../f.txt is not writable" (a plain file), or, for an executable file, the migration ran
    and then failed with "[Errno 17] File exists: '.../f.txt'"."""
    blocker = tmp_path / "f.txt"
    blocker.write_text("")
    blocker.chmod(mode)
    new = blocker / "new"
    assert migrate_main([str(LEGACY_A), str(new)]) == 3
    assert one_line_error(capsys, "migrate").endswith(
        f"error: NEW {new}: {blocker} is a file, not a folder the directory can be created in; choose another NEW")


def test_check_cli(files, capsys):
    assert check_main([str(files / "ckpt"), "--json", str(files / "no_dir" / "r.json"), "--quick"]) == 3
    assert "no_dir does not exist" in one_line_error(capsys, "check")
    assert check_main([str(files / "ckpt"), "--geometry", str(files / "sodium.xyz"), "--quick"]) == 2
    assert "Na (Z=11)" in one_line_error(capsys, "check")


@pytest.mark.parametrize("command", [["combine", "missing_a", "missing_b"],
                                     ["calibrate", "missing", "--data", "x.npz"]])
def test_ensemble_cli_checks_out_can_be_created_before_reading(tmp_path, capsys, command):
    """On main an --out below a file read every checkpoint, then said "[Errno 17] File exists: '.../f.txt'"."""
    (tmp_path / "f.txt").write_text("")
    out = tmp_path / "f.txt" / "ens"
    assert ensemble_main([*command, "--out", str(out)]) == 3
    assert one_line_error(capsys, "ensemble").endswith(
        f"error: --out {out}: {tmp_path / 'f.txt'} is a file, not a folder the directory can be created in; "
        "choose another --out")


def test_generate_cli_checks_out_before_labelling(tmp_path, capsys):
    assert generate_main(["--out", str(tmp_path / "no_dir" / "sub" / "d.npz")]) == 3
    assert one_line_error(capsys, "data.generate").endswith(
        f"error: --out {tmp_path / 'no_dir' / 'sub' / 'd.npz'}: directory {tmp_path / 'no_dir' / 'sub'} does not "
        "exist; create it first")
    (tmp_path / "f.txt").write_text("")
    assert generate_main(["--out", str(tmp_path / "f.txt" / "d.npz")]) == 3  # main: "f.txt does not exist"
    assert one_line_error(capsys, "data.generate").endswith(
        f"error: --out {tmp_path / 'f.txt' / 'd.npz'}: {tmp_path / 'f.txt'} is a file, not a directory; choose "
        "another --out")
    assert generate_main(["--out", str(tmp_path / "d.txt")]) == 2  # numpy would write d.txt.npz
    assert "give a path ending in .npz" in one_line_error(capsys, "data.generate")


def test_generate_cli_refuses_md_options_with_normal_mode_sampling(tmp_path, capsys):
    """--sampling normal-modes --timestep 1 --friction 0.1 ran without a word about the ignored MD options."""
    out = str(tmp_path / "d.npz")
    assert generate_main(["--sampling", "normal-modes", "--timestep", "1", "--friction", "0.1", "--out", out]) == 2
    assert one_line_error(capsys, "data.generate").endswith(
        "error: --sampling normal-modes does not use --timestep, --friction (Langevin MD only): remove them or "
        "choose --sampling md")
    assert not (tmp_path / "d.npz").exists()


def test_generate_names_its_keywords_in_python():
    from physnetjax.data.generate import generate

    with pytest.raises(ValueError, match=r"^timestep must be finite and > 0 fs, received inf$"):
        generate("H2O", frames=2, timestep=float("inf"))
    with pytest.raises(ValueError, match=r"^equilibration_steps must be >= 0, received -1$"):
        generate("H2O", frames=2, equilibration_steps=-1)


@pytest.mark.parametrize("option,value,message", [
    ("--friction", "-1", "--friction must be finite and > 0 1/fs, received -1.0"),  # main: internal error (sygvd)
    ("--friction", "nan", "--friction must be finite and > 0 1/fs, received nan"),  # main: internal error (sygvd)
    # main: an xTB SCF failure at the first frame that blamed the charge and spin ("try another uhf")
    ("--timestep", "inf", "--timestep must be finite and > 0 fs, received inf"),
    ("--temperature", "inf", "--temperature must be finite and > 0 K, received inf"),
    # main: one message for four options ("--frames and --stride must be >= 1, ... and --timestep > 0")
    ("--timestep", "nan", "--timestep must be finite and > 0 fs, received nan"),
    ("--stride", "0", "--stride must be >= 1, received 0"),
    ("--equilibration-steps", "-1", "--equilibration-steps must be >= 0, received -1"),
    # main: a data set of total charge 0.5 e
    ("--charge", "0.5", "--charge must be a whole number of e (the molecule's total charge), received 0.5"),
])
def test_generate_cli_refuses_bad_numbers_before_labelling(tmp_path, capsys, option, value, message):
    assert generate_main(["--molecule", "H2O", "--frames", "2", "--out", str(tmp_path / "d.npz"), option, value]) == 2
    assert message in one_line_error(capsys, "data.generate")
    assert not (tmp_path / "d.npz").exists()
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("options,message", [
    # main: labelled H2O+ with tblite's default spin state, stated nowhere, exit 0
    (["--charge", "1"], "error: H2O at charge 1 has 9 electrons, 7 of them in the valence shells GFN2-xTB treats, "
                        "an odd number: give uhf (--uhf), the number of unpaired electrons, e.g. 1 for a doublet"),
    (["--charge", "1", "--uhf", "2"], "error: uhf 2 does not match the parity of the electrons: H2O at charge 1 has "
                                      "9 electrons, 7 of them in the valence shells GFN2-xTB treats, so uhf must be "
                                      "odd"),
    # main: labelled H2O- at uhf 9 (as at 11 and 13) in a state holding 6 of its 9 valence electrons, exit 0
    (["--charge", "-1", "--uhf", "9"], "error: uhf 9: the number of unpaired electrons must be between 0 and 3 (H2O at "
                                       "charge -1 has 11 electrons, 9 of them in the valence shells GFN2-xTB treats, "
                                       "in 6 valence orbitals: at most 6 electrons can have one spin, so uhf <= 2 × 6 "
                                       "- 9)"),
])
def test_generate_cli_refuses_a_spin_state_the_electron_count_cannot_have(tmp_path, capsys, options, message):
    assert generate_main(["--molecule", "H2O", "--frames", "2", "--out", str(tmp_path / "d.npz"), *options]) == 2
    assert one_line_error(capsys, "data.generate").endswith(message)
    assert list(tmp_path.iterdir()) == []


def test_train_cli_refuses_a_frame_with_coincident_atoms(tmp_path, capsys):
    """On main such a frame in the test split gave `test energy MAE nan` and exit 0."""
    with np.load(DATA / "train_ethanol64.npz") as npz:
        arrays = dict(npz)
    arrays["R"][40, 3] = arrays["R"][40, 2]
    np.savez(tmp_path / "d.npz", **arrays)
    assert train_main(["--data", str(tmp_path / "d.npz"), "--out", str(tmp_path / "run")]) == 2
    assert "atoms closer than 0.1 Å in frame(s) 40" in one_line_error(capsys, "train")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("option,value,message", [
    ("--max-atomic-number", "6", "element(s) O (Z=8) in 64 frame(s)"),  # the data hold O, the model embeds Z <= 6
    ("--correlation", "0", "--correlation must be at least 1, received 0"),
    ("--radial-mlp", "0", "--radial-mlp must be at least 1 when given, received 0"),  # main: radial_mlp must be None
    ("--message-degree", "2", "--message-degree 2 > --max-degree 1 needs --correlation >= 2"),
    # main: "features and num_basis_functions must be >= 1 and max_degree >= 0, received 0, 16, 1", after reading data
    ("--features", "0", "--features must be at least 1, received 0"),
    ("--num-basis-functions", "-1", "--num-basis-functions must be at least 1, received -1"),
    ("--max-degree", "-1", "--max-degree must be at least 0, received -1"),
    ("--num-iterations", "0", "--num-iterations must be at least 1, received 0"),  # main: num_iterations
    ("--message-degree", "0", "--message-degree must be at least --max-degree = 1 when given, received 0"),
])
def test_train_cli_refuses_bad_model_settings_before_writing(tmp_path, capsys, option, value, message):
    """One error line naming the options, exit 2, and no run directory left behind."""
    assert train_main(["--data", str(DATA / "train_ethanol64.npz"), "--out", str(tmp_path / "run"),
                       option, value]) == 2
    assert message in one_line_error(capsys, "train")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("option,value,message", [  # main named the TrainConfig field in each (learning_rate, ...)
    ("--learning-rate", "nan", "--learning-rate must be > 0 and finite, received nan"),
    ("--learning-rate", "0", "--learning-rate must be > 0 and finite, received 0.0"),
    ("--forces-weight", "nan", "--forces-weight must be >= 0 and finite, received nan"),
    ("--energy-weight", "-1", "--energy-weight must be >= 0 and finite, received -1.0"),
    ("--charges --dipole-weight", "-1", "--dipole-weight must be >= 0 and finite, received -1.0"),
    ("--charges --charge-weight", "inf", "--charge-weight must be >= 0 and finite, received inf"),
    ("--cutoff", "nan", "--cutoff must be larger than 0 and finite, received nan"),
    ("--clip-norm", "0", "--clip-norm must be > 0 and finite, received 0.0"),
    ("--warmup-epochs", "-5", "--warmup-epochs must be >= 0 and finite, received -5.0"),
    ("--schedule exponential --decay-rate", "0", "--decay-rate must be > 0 and finite, received 0.0"),
    ("--zbl --zbl-cutoff", "-1", "--zbl-cutoff must be > 0 and finite, received -1.0"),  # trained to 3109 eV MAE
    ("--force-check-delta", "0", "--force-check-delta must be > 0 and finite, received 0.0"),
    ("--force-check-threshold", "-1", "--force-check-threshold must be > 0 and finite, received -1.0"),
    ("--patience", "0", "--patience must be >= 1 (or not given), received 0"),  # an older main stopped before epoch 1
    ("--max-time", "inf", "--max-time must be > 0 seconds and finite, received inf"),
    ("--max-atomic-number", "0", "--max-atomic-number must be >= 1 (or not given), received 0"),
    ("--n-res", "-1", "--n-res must be >= 1, received -1"),
    ("--seed", "-1", "--seed must be an integer from 0 to 4294967295: JAX keeps 32 bits of a seed, so a larger one "
                     "repeats a smaller one's numbers; received -1"),
    ("--epochs", "0", "--epochs must be >= 1, received 0"),
    ("--batch-size", "-1", "--batch-size must be >= 1, received -1"),
    ("--log-every", "0", "--log-every must be >= 1, received 0"),
    ("--ema-decay", "1", "--ema-decay must be in [0, 1), received 1.0"),
    ("--ensemble", "0", "--ensemble must be >= 1 member, received 0"),
    ("--bootstrap --ensemble", "1", "--bootstrap resamples the training frames per ensemble member; it needs "
                                    "--ensemble >= 2, received 1"),
    ("--force-sign", "0", "--force-sign must be 1 (F = -dE/dR) or -1 (the file stores +dE/dR), received 0"),
    ("--final-stage", "1", "--final-stage must be a fraction of the run in [0, 1), received 1.0"),
    ("--checkpoint-interval-s", "nan", "--checkpoint-interval-s must be >= 0 seconds, received nan"),
    ("--dispersion d3bj --dispersion-cutoff", "0", "--dispersion-cutoff must be a positive, finite distance in Å, "
                                                   "received 0.0"),
    ("--dispersion d3bj --dispersion-functional dsdpbep86 --dispersion-trainable", "",
     "--dispersion-trainable keeps s6, s8, a1, a2 positive through a softplus, but 'dsdpbep86' has s8 = 0.0"),
])
def test_train_cli_refuses_bad_numbers_before_writing(tmp_path, capsys, option, value, message):
    """NaN, infinite, zero or negative values where none is meaningful: one error line naming the option, exit 2,
    no run directory."""
    options = option.split() + ([value] if value else [])
    assert train_main(["--data", str(DATA / "train_ethanol64.npz"), "--out", str(tmp_path / "run"),
                       "--features", "8", "--epochs", "1", "--no-progress", "--no-plots", *options]) == 2
    assert f"train: error: {message}" in one_line_error(capsys, "train")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("options,message", [
    # main: NaN loss blamed on the learning rate ("lower --learning-rate")
    (["--optimizer", "adamw", "--weight-decay", "nan"], "--weight-decay must be >= 0 and finite, received nan"),
    (["--optimizer", "adamw", "--weight-decay", "-1"], "--weight-decay must be >= 0 and finite, received -1.0"),
    (["--final-lr-factor", "-1"], "--final-lr-factor must be >= 0 and finite, received -1.0"),  # a negative lr
    # main: internal error (ZeroDivisionError), exit 5
    (["--schedule", "exponential", "--decay-epochs", "0"], "--decay-epochs must be > 0 and finite, received 0.0"),
    (["--schedule", "exponential", "--decay-epochs", "-1"], "--decay-epochs must be > 0 and finite, received -1.0"),
    (["--schedule", "plateau", "--plateau-factor", "0"], "--plateau-factor must be in (0, 1] (the learning rate's "
                                                         "factor on a plateau), received 0.0"),  # main: lr 0
    (["--schedule", "plateau", "--plateau-factor", "2"], "--plateau-factor must be in (0, 1]"),
    (["--schedule", "plateau", "--plateau-patience", "-1"], "--plateau-patience must be >= 0 epochs, received -1"),
])
def test_train_cli_refuses_schedule_and_optimizer_settings_that_trained_wrong(tmp_path, capsys, options, message):
    """On main each of these trained without a word (or failed far into the run); exit 2 and no run directory."""
    assert train_main(["--data", str(DATA / "train_ethanol64.npz"), "--out", str(tmp_path / "run"),
                       "--features", "8", "--epochs", "1", "--no-progress", "--no-plots", *options]) == 2
    assert f"train: error: {message}" in one_line_error(capsys, "train")
    assert not (tmp_path / "run").exists()


def test_train_cli_stops_a_diverging_run_with_a_message_and_exit_4(tmp_path, capsys):
    """A learning rate of 1e6 sends the first epoch's loss to NaN: the run stops there (exit 4, run stopped) with
    a line naming the epoch and the remedy; metrics.csv holds no row of it and no checkpoint is written."""
    assert train_main(["--data", str(DATA / "train_ethanol64.npz"), "--out", str(tmp_path / "run"),
                       "--features", "8", "--epochs", "3", "--learning-rate", "1e6", "--no-progress",
                       "--no-plots"]) == 4
    assert one_line_error(capsys, "train").endswith("error: epoch 1: training loss is nan; lower --learning-rate")
    assert (tmp_path / "run" / "metrics.csv").read_text().count("\n") == 1
    assert not list((tmp_path / "run").glob("checkpoints/epoch-*"))


def test_train_cli_resume_names_the_option_of_a_bad_override(tmp_path, capsys):
    """On main --resume RUN --epochs 0 said "epochs must be >= 1, received 0"."""
    run = tmp_path / "run"
    run.mkdir()
    TrainConfig(data=[str(DATA / "train_ethanol64.npz")], out=str(run), features=8).save(run / "config.json")
    assert train_main(["--resume", str(run), "--epochs", "0"]) == 2
    assert one_line_error(capsys, "train").endswith("train: error: --epochs must be >= 1, received 0")


@pytest.mark.parametrize("settings,message", [
    (dict(learning_rate=0.0), "^learning_rate must be > 0 and finite, received 0.0$"),
    (dict(features=0), "^features must be at least 1, received 0$"),
    (dict(max_degree=1, message_degree=2), r"^message_degree 2 > max_degree 1 needs correlation >= 2"),
    (dict(dispersion="d3bj", dispersion_cutoff=-1.0), "^dispersion_cutoff must be a positive, finite distance"),
])
def test_train_config_names_its_fields_in_python(settings, message):
    """Only a command line passes its option names; TrainConfig from Python names the fields."""
    with pytest.raises(ValueError, match=message):
        TrainConfig(**settings)
    assert "names" not in TrainConfig(names={"features": "--features"}).to_dict()


def _add_bogus_key(text: str) -> str:
    return json.dumps({**json.loads(text), "bogus": 1})


@pytest.mark.parametrize("name,edit,message", [
    ("config.json", _add_bogus_key, "config.json: unknown setting(s) ['bogus']"),  # main: internal error
    ("config.json", lambda text: text[:40], "config.json: not valid JSON"),
    ("config.json", lambda text: "[1, 2]", "config.json: expected a JSON object of settings, found list"),
    ("config.json", lambda text: json.dumps({**json.loads(text), "epochs": "many"}),
     'config.json: epochs must be an integer, received "many"; restore the file the run wrote'),
    ("config.json", lambda text: json.dumps({**json.loads(text), "epochs": 0}), "config.json: epochs must be >= 1"),
    ("model.json", _add_bogus_key, "model.json: not a model configuration"),
    ("model.json", lambda text: text[:40], "model.json: not valid JSON"),
])
def test_train_cli_resume_names_a_damaged_run_file(tmp_path, capsys, name, edit, message):
    """An edited or truncated config.json / model.json: one line naming the file, exit 2, the file left as it is."""
    run = tmp_path / "run"
    run.mkdir()
    TrainConfig(data=[str(DATA / "train_ethanol64.npz")], out=str(run), features=8).save(run / "config.json")
    write_json(run / "model.json", PhysNet(features=8, max_atomic_number=8).config())
    save_split(run / "split.npz", random_split(64, 0.1, 0.1, 0))
    edited = edit((run / name).read_text())
    (run / name).write_text(edited)
    assert train_main(["--resume", str(run), "--no-progress"]) == 2
    line = one_line_error(capsys, "train")
    assert str(run / name) in line and message in line
    assert (run / name).read_text() == edited


def test_train_cli_leaves_the_package_loggers_as_it_found_them(tmp_path, capsys):
    """Its stdout handler stayed on the 'physnetjax' logger: a later in-process CLI call (another stdout) logged
    through it ('--- Logging error ---' once that stream was closed) and nothing reached the root logger."""
    import logging

    package = logging.getLogger("physnetjax")
    before = (list(package.handlers), package.level, package.propagate, logging.getLogger("physnetjax.checkpoint").level)
    assert train_main(["--data", str(tmp_path / "missing.npz"), "--out", str(tmp_path / "run")]) == 2
    assert "--data" in one_line_error(capsys, "train")
    after = (list(package.handlers), package.level, package.propagate, logging.getLogger("physnetjax.checkpoint").level)
    assert after == before


def test_train_cli_init_from_refuses_another_architecture_and_records_its_own(files, tmp_path, capsys):
    """--init-from fixes the architecture: on main --features 16 --cutoff 3 beside it were ignored without a word
    (the model kept 8 features and 4 Å) and config.json/config.toml recorded the defaults, not the model trained."""
    start = ["--data", str(DATA / "train_ethanol64.npz"), "--init-from", str(files / "ckpt"), "--epochs", "1",
             "--no-progress", "--no-plots", "--valid", "8", "--test", "8"]
    assert train_main([*start, "--out", str(tmp_path / "run"), "--features", "16", "--cutoff", "3"]) == 2
    message = one_line_error(capsys, "train")
    assert "--features 16 (the checkpoint has 8), --cutoff 3.0 (the checkpoint has 4.0)" in message
    assert not (tmp_path / "run").exists()
    assert train_main([*start, "--out", str(tmp_path / "ok"), "--features", "8", "--message-degree", "1"]) == 0
    recorded = TrainConfig.load(tmp_path / "ok" / "config.json")
    assert (recorded.features, recorded.num_iterations, recorded.cutoff, recorded.max_atomic_number) == (8, 1, 4.0, 9)
    assert "\nnum_iterations = 1\n" in (tmp_path / "ok" / "config.toml").read_text()


def test_train_python_api_refuses_settings_it_would_ignore(files, tmp_path):
    """The CLI refused them; train(TrainConfig(...)) from Python still ignored them without a word (a TrainConfig
    cannot tell a given value from a default, so values other than the defaults count)."""
    from physnetjax.train import train

    data = [str(DATA / "train_ethanol64.npz")]
    with pytest.raises(PhysNetInputError, match=r"--features 16 \(the checkpoint has 8\)"):
        train(TrainConfig(data=data, init_from=str(files / "ckpt"), features=16, out=str(tmp_path / "a")))
    with pytest.raises(PhysNetInputError, match=r"setting\(s\) that would be ignored: --weight-decay 0.1 \(used "
                                                r"only with --optimizer adamw"):
        train(TrainConfig(data=data, weight_decay=0.1, out=str(tmp_path / "b")))
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


@pytest.mark.parametrize("labels,metric,message", [
    (("E",), "forces_mae", "none of the 8 validation frames has force labels"),
    (("F",), "energy_rmse", "none of the 8 validation frames has energy labels"),
    (("E", "F", "D"), "dipole_mae", "a model without --charges predicts no dipoles"),
    (("E", "F"), "stress_mae", "none of the 8 validation frames has stress labels"),
])
def test_train_cli_refuses_a_best_metric_it_cannot_measure(tmp_path, capsys, labels, metric, message):
    """On main every epoch ran, none was ever best, and the run ended with 'RUN/best does not exist' (exit 2)."""
    with np.load(DATA / "train_ethanol64.npz") as npz:
        np.savez(tmp_path / "d.npz", **{k: npz[k] for k in ("R", "Z", *labels)})
    assert train_main(["--data", str(tmp_path / "d.npz"), "--out", str(tmp_path / "run"), "--valid", "8",
                       "--best-metric", metric, "--features", "8", "--epochs", "1", "--no-progress", "--no-plots"]) == 2
    assert (f"--best-metric {metric} cannot be measured: {message}, so no epoch would be best and no checkpoint "
            "saved; choose --best-metric loss") in one_line_error(capsys, "train")
    assert not (tmp_path / "run").exists()


def test_train_cli_refuses_options_its_settings_do_not_use(tmp_path, capsys):
    """On main --weight-decay without adamw, --decay-rate under the cosine schedule, --dipole-weight without --charges
    and --zbl-cutoff without --zbl trained as if not given; a run's own config.toml (every option, defaults
    included) is still accepted."""
    start = ["--data", str(DATA / "train_ethanol64.npz"), "--features", "8", "--epochs", "1", "--no-progress",
             "--no-plots"]
    assert train_main([*start, "--out", str(tmp_path / "run"), "--weight-decay", "0.1", "--decay-rate", "0.5",
                       "--dipole-weight", "5", "--zbl-cutoff", "1.5"]) == 2
    message = one_line_error(capsys, "train")
    for part in ("--weight-decay 0.1 (used only with --optimizer adamw; here --optimizer is amsgrad)",
                 "--decay-rate 0.5 (used only with --schedule exponential; here --schedule is cosine)",
                 "--dipole-weight 5.0 (used only with --charges; here --charges is False)",
                 "--zbl-cutoff 1.5 (used only with --zbl; here --zbl is False)"):
        assert part in message
    assert not (tmp_path / "run").exists()
    config = tmp_path / "run.toml"
    config.write_text(render(build_train_parser()))  # the template: every option at its default
    assert train_main([*start, "--config", str(config), "--out", str(tmp_path / "ok"), "--optimizer", "adamw",
                       "--weight-decay", "0.1"]) == 0


def test_the_smallest_allowed_training_settings_are_accepted():
    """The bounds refused just below (patience and max_atomic_number >= 1, max_time > 0) accept their edge: a model
    of hydrogen only, patience of one epoch, half a second of training."""
    from physnetjax.train.config import TrainConfig

    config = TrainConfig(patience=1, max_atomic_number=1, max_time=0.5)
    assert (config.patience, config.max_atomic_number, config.max_time) == (1, 1, 0.5)


def test_settings_used_only_when_another_differs_from_its_default_are_named_without_it():
    """--final-energy-weight acts only with a --final-stage above 0, the D3 settings only with --dispersion (the other
    setting's value None in USED_ONLY_WITH: any value but the default); with --init-from the architecture's settings
    are the checkpoint's, so --zbl-cutoff is not judged there, but --weight-decay still is."""
    from physnetjax.train.config import TrainConfig, unused_settings

    assert unused_settings(TrainConfig(final_energy_weight=5.0)) == [
        "--final-energy-weight 5.0 (used only with a --final-stage; here --final-stage is 0.0)"]
    assert unused_settings(TrainConfig(final_energy_weight=5.0, final_stage=0.5)) == []
    assert unused_settings(TrainConfig(dispersion_cutoff=10.0)) == [
        "--dispersion-cutoff 10.0 (used only with a --dispersion; here --dispersion is None)"]
    assert unused_settings(TrainConfig(dispersion_cutoff=10.0, dispersion="d3bj")) == []
    assert unused_settings(TrainConfig(zbl_cutoff=1.5)) == ["--zbl-cutoff 1.5 (used only with --zbl; here --zbl is "
                                                            "False)"]
    assert unused_settings(TrainConfig(init_from="run/best", zbl_cutoff=1.5, weight_decay=0.1)) == [
        "--weight-decay 0.1 (used only with --optimizer adamw; here --optimizer is amsgrad)"]


@pytest.mark.parametrize("code", [130, 143, 2])
def test_exit_process_ends_an_interrupted_run_at_once_with_its_output_flushed(code):
    """Ctrl-C during a JAX compilation (`spectra ir` 12 s in) printed 'interrupted' and then died with SIGSEGV
    (exit -11) in the interpreter's shutdown; the scripts now end an interrupted run with os._exit(130) after
    flushing stdout and stderr (buffered: a pipe), and every other status with sys.exit as before."""
    import subprocess
    import sys

    script = ("import atexit, sys\nfrom physnetjax.cli_errors import exit_process\n"
              "atexit.register(lambda: print('atexit ran'))\n"
              "print('partial output', end='')\nprint('error line', file=sys.stderr, end='')\n"
              f"exit_process({code})\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == code
    assert done.stdout == ("partial output" if code in (130, 143) else "partial outputatexit ran\n")
    assert done.stderr == "error line"
