"""What the command line tools print, as a new user meets it: --help of every tool, tables off a
terminal, the legacy-load warning, the force-check line, the run's config.json, the NVE
temperature note."""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import logging
import re
import types
import warnings
from pathlib import Path

import numpy as np
import pytest
from rich.console import Console
from rich.text import Text

from physnetjax.cli_help import describe, plain_text
from physnetjax.text_table import plain_table, print_table

LEGACY = Path(__file__).parent / "data" / "legacy"
CLIS = {
    "train": ("physnetjax.train.__main__", [[]]),
    "md": ("physnetjax.md.__main__", [[]]),
    "eval": ("physnetjax.eval.__main__", [[]]),
    "check": ("physnetjax.check.__main__", [[]]),
    "migrate": ("physnetjax.migrate", [[]]),
    "data.generate": ("physnetjax.data.generate", [[]]),
    "spectra": ("physnetjax.spectra.__main__", [[], ["harmonic"], ["ir"]]),
    "learn": ("physnetjax.learn.__main__", [[]]),
    "ensemble": ("physnetjax.ensemble.__main__", [[], ["combine"], ["calibrate"]]),
}


def help_texts() -> dict:
    """{"tool [sub]": --help text} of every command line tool."""
    import importlib

    texts = {}
    for tool, (module_name, prefixes) in CLIS.items():
        module = importlib.import_module(module_name)
        for prefix in prefixes:
            stream = io.StringIO()
            with contextlib.redirect_stdout(stream), pytest.raises(SystemExit) as stop:
                module.main(prefix + ["--help"])
            assert stop.value.code == 0
            texts[" ".join([tool, *prefix])] = stream.getvalue()
    return texts


def option_helps(text: str) -> dict:
    """{"--flag": its help text, lines joined} from an argparse --help page."""
    entries, current = {}, None
    for line in text.split("options:", 1)[1].splitlines():
        if line.startswith("  -"):
            head, _, rest = line.strip().partition("  ")
            current = max(re.findall(r"--[\w-]+", head) or ["-h"], key=len)
            entries[current] = rest.strip()
        elif current is not None and line.startswith(" " * 20):
            entries[current] = (entries[current] + " " + line.strip()).strip()
        else:
            current = None
    return entries


@pytest.fixture(scope="module")
def helps():
    return help_texts()


def test_help_is_plain_text_with_each_default_once(helps):
    for tool, text in helps.items():
        assert "``" not in text and ":mod:" not in text and ":func:" not in text, f"{tool}: reST markup in --help"
        for flag, help_text in option_helps(text).items():
            assert help_text, f"{tool} {flag}: no description"
            assert help_text.lower().count("default") <= 1, f"{tool} {flag}: default shown twice: {help_text}"


def test_help_shows_defaults_and_units_where_users_missed_them(helps):
    train, md, generate = option_helps(helps["train"]), option_helps(helps["md"]), option_helps(helps["data.generate"])
    assert "(default: 32)" in train["--features"] and "feature" in train["--features"]
    assert "Å" in train["--cutoff"] and "(default: 5.0)" in train["--cutoff"]
    assert "(default: 1000)" in md["--steps"] and "(default: 0)" in md["--seed"]
    assert "(default: 20.0)" in md["--energy-tolerance"]
    assert "(default: 1000)" in generate["--frames"] and "(default: 2000)" in generate["--equilibration-steps"]
    assert "(default: 0.0001)" in option_helps(helps["spectra harmonic"])["--fmax"]
    learn = option_helps(helps["learn"])
    assert "(default: 4)" in learn["--rounds"] and "(default: 2000)" in learn["--md-steps"]
    assert "(default: 32)" in learn["--features"] and "feature" in learn["--features"]
    assert "(default: [300.0, 500.0, 800.0])" in learn["--temperatures"]
    assert "(default: 32)" in option_helps(helps["ensemble calibrate"])["--batch-size"]


def test_rest_markup_is_removed():
    assert plain_text("see :mod:`physnetjax.md` and ``python -m x``") == "see physnetjax.md and python -m x"
    assert describe('"""Line one\n  continues ``here``.\n\nSecond paragraph."""'.strip('"')) == \
        "Line one continues here."


# -- tables off a terminal -------------------------------------------------------------------------

LONG = "a summary far longer than what is left of eighty columns once seven numeric columns are laid out"


def test_plain_table_pads_and_never_cuts():
    text = plain_table("title", ["a", "value"], [["x", "1"], ["longer", "12345"]], justify=["left", "right"])
    assert text.splitlines() == ["title", "a       value", "------  -----", "x           1", "longer  12345"]


def test_check_table_off_a_terminal_keeps_every_column(tmp_path):
    from physnetjax.check.report import CheckReport, CheckResult

    report = CheckReport([CheckResult("forces.fd.total", "forces", 0, "warn", 1.5e-7, "relative", 1e-4, 1e-2, LONG)],
                         [{"index": 0, "name": "x", "formula": "C2H6O", "num_atoms": 9, "total_charge": 0.0}], {}, {})
    piped = io.StringIO()
    report.render(Console(file=piped))            # a StringIO is not a terminal, like a pipe or a CI log
    lines = piped.getvalue().splitlines()
    row = next(line for line in lines if line.startswith("0  forces.fd.total"))
    assert row.endswith(LONG) and "WARN" in row and "1.5e-07" in row
    assert "overall: WARN (0 pass, 1 warn, 0 fail)" in lines
    terminal = io.StringIO()
    report.render(Console(file=terminal, force_terminal=True, width=200))
    assert "┃" in terminal.getvalue() or "│" in terminal.getvalue()


class Terminal(io.StringIO):
    """A stream rich takes for a terminal (its width comes from COLUMNS)."""

    def isatty(self) -> bool:
        return True


PATH = "/data/runs/" + "j" * 90 + ".extxyz[12]"


def visible_lines(text: str) -> list[str]:
    """The lines of terminal output as they show: without ANSI style codes."""
    return re.sub(r"\x1b\[[0-9;]*m", "", text).splitlines()


def test_a_narrow_terminal_folds_the_wrapping_column_and_keeps_the_others_whole(monkeypatch):
    """The wrapping column (the last by default) folds a path longer than the terminal instead of cutting it
    with '…'; the other columns keep their widest cell."""
    monkeypatch.setenv("COLUMNS", "60")
    stream = Terminal()
    print_table(Console(file=stream), "t", ["rank", "value", "summary"], [["1", "-0.012345678", PATH]])
    text = stream.getvalue()
    assert "│" in text and "…" not in text and "-0.012345678" in text and text.count("j") == 90
    assert PATH in re.sub(r"[│\s]", "", text) and max(map(len, visible_lines(text))) <= 60


def test_eval_tables_on_a_narrow_terminal_fold_frame_names_and_keep_numbers_whole(monkeypatch):
    from physnetjax.eval.evaluate import EvalResult
    from physnetjax.eval.table import render

    monkeypatch.setenv("COLUMNS", "80")
    frames = {"source": np.array([PATH]), "num_atoms": np.array([9]), "energy_error": np.array([-0.012345678]),
              "forces_mae": np.array([0.0456789]), "forces_max_atom_error": np.array([0.3456789])}
    result = EvalResult(metrics={"energy_mae": 0.012345678, "energy_rmse": 0.0123456}, counts={"energy": 1},
                        element_forces={}, frames=frames, worst_forces=[0], worst_energy=[])
    stream = Terminal()
    render(result, stream)
    text = stream.getvalue()
    assert "│" in text and "…" not in text and text.count("j") == 90 and max(map(len, visible_lines(text))) <= 80
    assert all(number in text for number in ("-0.01235", "0.04568", "0.3457", "0.01235"))
    piped = io.StringIO()
    render(result, piped)
    tables = piped.getvalue().split("\n\n")
    assert [t.splitlines()[0] for t in tables] == ["errors (prediction − reference)", "worst frames"]
    assert tables[1].splitlines()[3].split() == ["forces", "#1", PATH, "9", "-0.01235", "0.04568", "0.3457"]


def test_migrate_report_off_a_terminal_is_plain(tmp_path):
    from physnetjax.checkpoint.report import render

    report = {"source": "old/epoch-3", "weights": "ema_params",
              "hyperparameters": {"zbl": {"raw": "True", "type": "string", "value": True, "use": LONG}},
              "parameters": [{"source": "ema_params/Dense_0/kernel", "target": "Dense_0/kernel", "shape": [4, 4],
                              "dtype": "float32", "action": "copied unchanged"}],
              "notes": ["a note"], "comparison": None}
    piped = io.StringIO()
    render(report, Console(file=piped))
    text = piped.getvalue()
    assert "Migrated old/epoch-3 (ema_params)" in text and "zbl        True    string  True    " + LONG in text
    assert "Dense_0/kernel  (4, 4)  copied unchanged" in text and "┃" not in text


def test_print_table_prints_cells_literally():
    stream = io.StringIO()
    print_table(Console(file=stream, force_terminal=True, width=120), "t", ["a", "b"],
                [["[bold]x[/bold]", Text("PASS", style="green")]])
    assert "[bold]x[/bold]" in stream.getvalue()


# -- one warning per legacy load -------------------------------------------------------------------

def test_legacy_load_warns_once(caplog):
    from physnetjax.checkpoint import load_checkpoint

    with warnings.catch_warnings(record=True) as caught, caplog.at_level(logging.WARNING):
        warnings.simplefilter("always")
        load_checkpoint(LEGACY / "C_synthD" / "epoch-30")
    legacy = [w for w in caught if "legacy physnetjax checkpoint" in str(w.message)]
    assert len(legacy) == 1
    assert "legacy physnetjax checkpoint" not in caplog.text


# -- force-check line and config.json of the trainer ------------------------------------------------

def test_force_check_line_is_shown_once_and_on_tenfold_growth(caplog):
    from physnetjax.train.loop import Trainer

    trainer = types.SimpleNamespace(force_check_shown=None, config=types.SimpleNamespace(force_check_threshold=1e-3))
    with caplog.at_level(logging.DEBUG, logger="physnetjax.train.loop"):
        for error in (3e-7, 3.2e-7, 2.9e-7, 4e-6, 5e-6):
            Trainer._log_force_check(trainer, error, "data.npz[4]")
    shown = [(r.levelno, r.getMessage()) for r in caplog.records if "force check" in r.getMessage()]
    assert [level for level, _ in shown] == [logging.INFO, logging.DEBUG, logging.DEBUG, logging.INFO, logging.DEBUG]
    assert "3e-07" in shown[0][1] and "4e-06" in shown[3][1]


def test_config_json_names_the_bundled_dataset(tmp_path, monkeypatch):
    from physnetjax.data import bundled_dataset_path
    from physnetjax.train import TrainConfig, loop

    monkeypatch.setattr(loop, "Trainer", lambda config, run_dir, **_: types.SimpleNamespace(run=lambda: {}))
    loop.train(TrainConfig(out=str(tmp_path / "run"), progress=False))
    stored = json.loads((tmp_path / "run" / "config.json").read_text())
    assert stored["data"] == [str(bundled_dataset_path())] and Path(stored["data"][0]).is_file()


# -- the NVE temperature note ----------------------------------------------------------------------

def test_nve_report_explains_its_mean_temperature(molecules):
    """In NVE, ⟨K⟩ − K(0) = E_pot(0) − ⟨E_pot⟩ (energy conservation), so the mean temperature is the
    drawn start temperature plus 2 (E_pot(0) − ⟨E_pot⟩) / (N_f k_B); the note states both parts."""
    import ase
    import jax

    from physnetjax import PhysNet, init_params
    from physnetjax.md.driver import simulate
    from physnetjax.units import BOLTZMANN

    model = PhysNet(features=8, max_degree=1, num_iterations=1, num_basis_functions=8, cutoff=4.0,
                    max_atomic_number=8, charges=False, zbl=False, n_res=1)
    params = init_params(model, 0)
    z, r = molecules["ethanol"]
    jax.config.update("jax_enable_x64", True)
    report = simulate(model, params, ase.Atoms(numbers=z, positions=r), steps=200, save_every=5, dtype="float64",
                      temperature_K=300.0, timestep_fs=0.25)
    assert report.degrees_of_freedom == 3 * len(z) - 3
    heating = 2 * report.start_potential_above_mean_eV / (report.degrees_of_freedom * BOLTZMANN)
    np.testing.assert_allclose(report.mean_temperature_K, report.drawn_temperature_K + heating, rtol=1e-3)
    note = report.temperature_note()
    assert note in report.lines() and f"{report.drawn_temperature_K:.1f} K" in note and "24 degrees" in note
    thermostatted = dataclasses.replace(report, ensemble="langevin")
    assert thermostatted.temperature_note() is None and not any("note:" in line for line in thermostatted.lines())


# -- no file left open by a damaged .npz -----------------------------------------------------------

def test_damaged_npz_is_an_error_and_leaves_no_open_file(tmp_path):
    """np.load(path) leaks its file handle when a zip is damaged (ResourceWarning in test runs)."""
    import gc

    from physnetjax.checkpoint.errors import CheckpointError
    from physnetjax.checkpoint.report import read_geometries
    from physnetjax.data.dataset import DataError, load_npz

    path = tmp_path / "truncated.npz"
    np.savez(path, R=np.zeros((2, 3, 3)), Z=np.ones((2, 3), int))
    with open(path, "r+b") as handle:
        handle.truncate(100)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(DataError, match="cannot read as .npz"):
            load_npz(path)
        with pytest.raises(CheckpointError, match="cannot be read as .npz"):
            read_geometries(path)
        gc.collect()
    assert not [w for w in caught if issubclass(w.category, ResourceWarning)]
