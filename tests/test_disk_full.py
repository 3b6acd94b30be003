"""A full disk (ENOSPC) never loses a complete result, never leaves a cut-short file that passes for one, and is
reported as one line naming the file, the cause and what was kept (exit status 3, an output problem).

The refused write is simulated by raising ``OSError(errno.ENOSPC, ...)`` where the file system would, after part of
the data was written (no mount: CI need not be root).
"""

import asyncio
import errno
import io
import json
import logging
import os
import sys
import types
from pathlib import Path

import ase
import ase.io
import numpy as np
import pytest

import physnetjax.checkpoint.format as checkpoint_format
from physnetjax import jsonlines
from physnetjax.checkpoint import is_checkpoint, load_checkpoint, load_train_state
from physnetjax.checkpoint.errors import CheckpointWriteError
from physnetjax.cli_errors import EXIT_OUTPUT, error_line, exit_code
from physnetjax.errors import OutputWriteError
from physnetjax.eval import outputs
from physnetjax.eval.evaluate import FRAME_COLUMNS
from physnetjax.md import driver
from physnetjax.md.io import TrajectoryWriter
from physnetjax.model import PhysNet
from physnetjax.predict import init_params
from physnetjax.train import loop, resume, train

from test_train import leaves, read_rows, tiny_config


def full_disk() -> OSError:
    return OSError(errno.ENOSPC, "No space left on device")


class FillingFile(io.FileIO):
    """A file whose write stores half of what it is given, then raises ENOSPC (a disk that fills mid-write)."""

    def write(self, data):
        data = bytes(data) if not isinstance(data, bytes) else data
        super().write(data[:len(data) // 2])
        raise full_disk()


_REAL_OPEN = open


def filling_open(file, mode="r", *args, **kwargs):
    """``open`` whose files opened for writing fill the disk at their first write (text or binary); it may replace
    ``builtins.open`` itself, for code that opens its files deep inside a library (ASE, matplotlib/PIL, NumPy)."""
    if not any(flag in mode for flag in "wax"):
        return _REAL_OPEN(file, mode, *args, **kwargs)
    raw = FillingFile(file, mode.replace("b", "").replace("t", ""))
    if "b" in mode:
        return raw
    return io.TextIOWrapper(raw, encoding=kwargs.get("encoding") or "utf-8", newline=kwargs.get("newline"),
                            write_through=True)


def assert_output_error(error: BaseException, path) -> None:
    """``error`` is an output problem (exit 3) whose one line names ``path`` and the full disk."""
    line = error_line("prog", error)
    assert exit_code(error) == EXIT_OUTPUT
    assert str(path) in line and "No space left on device" in line
    assert "\n" not in line


# -- the CLI's exit status ------------------------------------------------------------------------------------------


def test_a_full_disk_is_an_output_problem_whatever_raised_it():
    error = full_disk()  # what a write that names no file raises
    assert exit_code(error) == EXIT_OUTPUT
    assert "could not be written" in error_line("prog", error)


# -- JSON and JSON Lines files ----------------------------------------------------------------------------------------


def test_a_refused_json_write_leaves_the_file_as_it_was_and_no_temporary(tmp_path, monkeypatch):
    path = tmp_path / "metrics.json"
    jsonlines.write_json(path, {"epochs": [1]})
    before = path.read_text()
    monkeypatch.setattr(jsonlines, "open", filling_open, raising=False)
    with pytest.raises(OutputWriteError) as caught:
        jsonlines.write_json(path, {"epochs": [1, 2]})
    assert_output_error(caught.value, path)
    assert path.read_text() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.json"]


def test_a_refused_log_line_is_cut_off_again(tmp_path, monkeypatch):
    path = tmp_path / "t.xyz.jsonl"
    jsonlines.append_record(path, {"step": 0, "energy_eV": -1.0})
    monkeypatch.setattr(jsonlines, "open", filling_open, raising=False)
    with pytest.raises(OutputWriteError) as caught:
        jsonlines.append_record(path, {"step": 10, "energy_eV": -1.5})
    assert_output_error(caught.value, path)
    assert jsonlines.read_log(path) == [{"step": 0, "energy_eV": -1.0}]


# -- MD: trajectory and MD checkpoint ---------------------------------------------------------------------------------


def frame(step: int) -> ase.Atoms:
    atoms = ase.Atoms("H2", positions=[[0, 0, 0], [0, 0, 0.74 + 0.01 * step]])
    atoms.info["step"] = step
    return atoms


def _trajectory_full_at(step: int, monkeypatch) -> None:
    """The disk fills when the trajectory frame of ``step`` is written (half of it reaches the file)."""
    real_write = ase.io.write

    def filling_write(filename, images, **kwargs):
        if images.info.get("step") != step:
            return real_write(filename, images, **kwargs)
        text = io.StringIO()
        real_write(text, images, format="extxyz")
        with open(filename, "a") as handle:
            handle.write(text.getvalue()[:40])
        raise full_disk()

    monkeypatch.setattr(ase.io, "write", filling_write)


def test_a_refused_trajectory_frame_leaves_the_complete_frames_readable(tmp_path, monkeypatch):
    path = tmp_path / "t.xyz"
    writer = TrajectoryWriter(path)
    writer.write(frame(0))
    writer.write(frame(10))
    _trajectory_full_at(20, monkeypatch)
    with pytest.raises(OutputWriteError) as caught:
        writer.write(frame(20))
    writer.close()
    assert_output_error(caught.value, path)
    assert "step 20" in str(caught.value)
    monkeypatch.undo()
    assert [atoms.info["step"] for atoms in ase.io.read(path, index=":")] == [0, 10]


def test_a_refused_md_checkpoint_leaves_the_previous_one_and_no_temporary(tmp_path, monkeypatch):
    path = tmp_path / "state.npz"
    driver._save_npz(path, step=np.int64(100))
    real_savez = np.savez

    def filling_savez(file, **arrays):
        real_savez(file, **arrays)
        with open(file, "r+b") as handle:
            handle.truncate(10)
        raise full_disk()

    monkeypatch.setattr(driver.np, "savez", filling_savez)
    with pytest.raises(OutputWriteError) as caught:
        driver._save_npz(path, step=np.int64(200))
    assert_output_error(caught.value, path)
    assert "unchanged" in str(caught.value)
    assert int(np.load(path)["step"]) == 100
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.npz"]


def _example_md():
    """The shipped example model and its ethanol geometry (a random model's MD breaks its energy tolerance)."""
    from physnetjax.pretrained import example_geometry_path, example_model_path

    model, params = load_checkpoint(example_model_path())
    return model, params, ase.io.read(example_geometry_path())


def test_a_full_disk_during_md_names_the_md_checkpoint_to_continue_from(tmp_path, monkeypatch):
    """Checkpoints after every chunk of 2 frames (steps 10, 20); the trajectory's frame of step 25 meets a full disk:
    the error names the checkpoint's step (20), and a restart from it for the 10 steps left continues the kept frames
    to step 30."""
    model, params, atoms = _example_md()
    out, state = tmp_path / "t.xyz", tmp_path / "state.npz"
    settings = dict(save_every=5, chunk_frames=2, checkpoint_path=str(state), checkpoint_every=1)
    _trajectory_full_at(25, monkeypatch)
    with pytest.raises(OutputWriteError) as caught:
        driver.simulate(model, params, atoms, out=str(out), steps=30, **settings)
    assert_output_error(caught.value, out)
    assert (f"the MD checkpoint {state} is at step 20: free space and continue with --restart {state} (frames after "
            "that step are dropped)") in str(caught.value)
    monkeypatch.undo()
    assert [frame.info["step"] for frame in ase.io.read(out, index=":")] == [5, 10, 15, 20]
    driver.simulate(model, params, atoms, out=str(out), restart=str(state), steps=10, **settings)
    assert [frame.info["step"] for frame in ase.io.read(out, index=":")] == [5, 10, 15, 20, 25, 30]


@pytest.mark.parametrize("before", [False, True])
def test_a_full_disk_before_this_runs_first_md_checkpoint_says_what_is_there(tmp_path, monkeypatch, before):
    """The frame of step 5 fails, before this run's first checkpoint: the error says the one from an earlier run is
    as it was, or that there is none to continue from."""
    model, params, atoms = _example_md()
    out, state = tmp_path / "t.xyz", tmp_path / "state.npz"
    if before:
        state.write_bytes(b"an earlier run's checkpoint")
    _trajectory_full_at(5, monkeypatch)
    with pytest.raises(OutputWriteError) as caught:
        driver.simulate(model, params, atoms, out=str(out), steps=20, save_every=5, chunk_frames=2,
                        checkpoint_path=str(state))
    expected = (f"the MD checkpoint {state} is as before this run" if before else
                "this run wrote no MD checkpoint (--md-checkpoint) to continue from: free space and run it again")
    assert str(caught.value).endswith(expected)
    assert state.exists() == before


# -- eval outputs ---------------------------------------------------------------------------------------------------


def test_a_refused_eval_table_leaves_no_cut_short_file(tmp_path, monkeypatch):
    result = types.SimpleNamespace(frames={column: np.arange(200.0) for column in FRAME_COLUMNS})
    path = tmp_path / "frames.csv"
    monkeypatch.setattr(outputs, "open", filling_open, raising=False)
    with pytest.raises(OutputWriteError) as caught:
        outputs.write_frames_csv(result, path)
    assert_output_error(caught.value, path)
    assert list(tmp_path.iterdir()) == []


# -- every other whole-file output -------------------------------------------------------------------------------------

def _check_report(path):
    from physnetjax.check.report import CheckReport

    CheckReport([], [], {"features": len(path.name)}, {}).write_json(path)


def _train_config(path):
    from physnetjax.train.config import TrainConfig

    TrainConfig(epochs=len(path.name)).save(path)


def _resolved_options(path):
    from physnetjax.cli_config import write_resolved_config
    from physnetjax.md.__main__ import build_parser

    parser = build_parser()
    write_resolved_config(parser, {**vars(parser.parse_args(["--geometry", "in.xyz"])), "steps": len(path.name)}, path)


def _split(path):
    from physnetjax.data.split import save_split

    save_split(path, {"train": np.arange(len(path.name)), "valid": np.array([99]), "test": np.array([], np.int64)})


def _stick_plot(path):
    from physnetjax.spectra.plot import plot_stick_spectrum

    plot_stick_spectrum(path, np.array([667.0, 2349.0]), np.array([1.0, len(path.name)]))


def _last_md_frame(path):
    host = types.SimpleNamespace(positions=np.zeros((1, 2, 3)) + [[[0, 0, 0], [0, 0, 0.74]]],
                                 momenta=np.zeros((1, 2, 3)), potential_energy=np.array([-len(path.name)]),
                                 forces=np.zeros((1, 2, 3)), energies=None)
    driver._save_last_frame(ase.Atoms("H2"), None, host, 1, 0, 10, path, None, 0.0)


def _unconverged_geometry(path):
    from physnetjax.spectra.cli_harmonic import last_geometry_written
    from physnetjax.spectra.optimize import OptimizationError

    atoms = ase.Atoms("H2", positions=[[0, 0, 0], [0, 0, 0.74]])
    with pytest.raises(OptimizationError):
        with last_geometry_written(path.parent, atoms, "in.xyz", 0.0):
            raise OptimizationError("not converged", atoms.positions + len(path.parent.name), -1.0, 0.5, 100)


WHOLE_FILE_WRITERS = {"check --json": ("report.json", _check_report), "train config.json": ("config.json", _train_config),
                      "resolved options": ("config.toml", _resolved_options), "split": ("split.npz", _split),
                      "stick spectrum": ("spectrum.png", _stick_plot),
                      "MD last good frame": ("run.xyz.last_good.xyz", _last_md_frame),
                      "unconverged geometry": ("unconverged.xyz", _unconverged_geometry)}


@pytest.mark.parametrize("writer", WHOLE_FILE_WRITERS)
def test_a_refused_whole_file_output_leaves_the_previous_file_and_no_temporary(writer, tmp_path, monkeypatch):
    """These outputs were written in place: a full disk left a cut-short JSON/TOML/npz/PNG/xyz file in the place of
    the previous one (check --json, a run's config.json and config.toml, split.npz, the spectrum plots, MD's
    last-good frame and the optimiser's unconverged.xyz)."""
    name, write = WHOLE_FILE_WRITERS[writer]
    path = tmp_path / name
    write(path)
    before = path.read_bytes()
    with monkeypatch.context() as patch:
        patch.setattr("builtins.open", filling_open)
        with pytest.raises(OutputWriteError) as caught:
            write(tmp_path / name)
    assert_output_error(caught.value, path)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == [name]


def test_a_refused_learning_curve_says_how_to_write_the_report(tmp_path, monkeypatch):
    from physnetjax.learn.report import write_report

    rounds = [{"round": 0, "frames": 8, "selected": 0, "md": [], "valid": {"forces_mae": 0.1}, "test": None}]
    real_savefig = __import__("matplotlib.figure").figure.Figure.savefig

    def filling_savefig(figure, path, **kwargs):
        real_savefig(figure, path, **kwargs)
        with _REAL_OPEN(path, "r+b") as handle:
            handle.truncate(100)
        raise full_disk()

    monkeypatch.setattr("matplotlib.figure.Figure.savefig", filling_savefig)
    with pytest.raises(OutputWriteError, match="kept in state.json: rerun the same command") as caught:
        write_report(tmp_path, rounds)
    assert_output_error(caught.value, tmp_path / "learning_curve.png")
    assert list(tmp_path.iterdir()) == []


# -- training ---------------------------------------------------------------------------------------------------------


def test_a_link_never_points_at_an_incomplete_checkpoint(tmp_path):
    run = tmp_path / "run"
    (run / "checkpoints" / "epoch-0002").mkdir(parents=True)  # a write that did not finish
    with pytest.raises(CheckpointWriteError, match="not a complete checkpoint"):
        loop._point(run / "latest", run / "checkpoints" / "epoch-0002")
    assert not (run / "latest").is_symlink()


def refuse_writes_of(monkeypatch, name: str) -> None:
    """Checkpoint writes of the directory ``name`` fail as on a full disk (after orbax wrote part of the arrays)."""
    write_tree = checkpoint_format._write_tree

    def filling(directory, tree):
        if f".{name}.partial" in str(directory):
            directory.mkdir()
            (directory / "part").write_bytes(b"\0" * 100)
            raise full_disk()
        write_tree(directory, tree)

    monkeypatch.setattr(checkpoint_format, "_write_tree", filling)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    out = tmp_path_factory.mktemp("disk") / "whole"
    train(tiny_config(out, checkpoint_interval_s=0.0))
    return out


def test_a_full_disk_keeps_the_last_complete_checkpoint_and_the_run_resumes_exactly(tmp_path, monkeypatch,
                                                                                     uninterrupted):
    out = tmp_path / "run"
    refuse_writes_of(monkeypatch, "epoch-0003")
    with pytest.raises(CheckpointWriteError) as caught:
        train(tiny_config(out, checkpoint_interval_s=0.0))
    message = str(caught.value)
    assert_output_error(caught.value, out / "checkpoints" / "epoch-0003")
    assert f"keeps its last complete checkpoint {out / 'checkpoints' / 'epoch-0002'}" in message
    assert f"--resume {out}" in message
    assert os.path.realpath(out / "latest") == str(out / "checkpoints" / "epoch-0002")
    assert is_checkpoint(out / "latest") and is_checkpoint(out / "best")
    kept = {Path(os.path.realpath(out / name)).name for name in ("best", "latest")}
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == sorted(kept)  # no partial write left
    monkeypatch.undo()  # space freed

    resume(out)
    assert [row["epoch"] for row in read_rows(out)] == ["1", "2", "3"]
    for a, b in zip(leaves(load_train_state(out / "latest")), leaves(load_train_state(uninterrupted / "latest"))):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


def test_a_failed_background_write_stops_the_run_at_the_next_epoch(tmp_path, monkeypatch):
    """With checkpoints written every checkpoint_interval_s, a failed write was raised only at the next write or at
    the run's end: every epoch in between was trained for nothing. Epoch 1's write fails; later epochs fall within
    the interval (the trainer's clock is frozen after the first write)."""
    out = tmp_path / "run"
    refuse_writes_of(monkeypatch, "epoch-0001")
    calls = iter(range(10 ** 6))
    monkeypatch.setattr(loop, "time", types.SimpleNamespace(monotonic=lambda: 0.0 if next(calls) == 0 else 1e3))
    train_epoch = loop.Trainer._train_epoch

    def after_the_write(trainer, *args):
        if trainer.writer._done is not None:
            trainer.writer._done.wait(timeout=30)  # the failed write has finished before epoch 2 is saved
        return train_epoch(trainer, *args)

    monkeypatch.setattr(loop.Trainer, "_train_epoch", after_the_write)
    with pytest.raises(CheckpointWriteError) as caught:
        train(tiny_config(out, epochs=4, checkpoint_interval_s=100.0))
    assert_output_error(caught.value, out / "checkpoints" / "epoch-0001")
    assert [row["epoch"] for row in read_rows(out)] == ["1", "2"]


def test_a_full_disk_before_the_first_checkpoint_says_so_and_the_same_command_starts_over(tmp_path, monkeypatch):
    out = tmp_path / "run"
    refuse_writes_of(monkeypatch, "epoch-0001")
    with pytest.raises(CheckpointWriteError) as caught:
        train(tiny_config(out, epochs=1))
    assert "holds no complete checkpoint yet" in str(caught.value)
    assert "run the same command again" in str(caught.value)
    assert not (out / "latest").is_symlink() and not (out / "best").is_symlink()
    monkeypatch.undo()
    assert train(tiny_config(out, epochs=1))["epochs_run"] == 1


def test_a_refused_final_summary_is_finished_by_a_resume(tmp_path, monkeypatch):
    out = tmp_path / "run"
    write_json = jsonlines.write_json

    def filling(path, obj):
        if obj.get("final") is not None:
            raise OutputWriteError(f"{path}: cannot be written (No space left on device)", full_disk())
        write_json(path, obj)

    monkeypatch.setattr(loop, "write_json", filling)
    with pytest.raises(OutputWriteError) as caught:
        train(tiny_config(out, epochs=1))
    assert f"finish the run with python -m physnetjax.train --resume {out}" in str(caught.value)
    assert json.loads((out / "metrics.json").read_text())["final"] is None
    assert is_checkpoint(out / "best")
    monkeypatch.undo()
    resume(out)
    assert json.loads((out / "metrics.json").read_text())["final"]["epochs_run"] == 1
    load_checkpoint(out / "best")


# -- checkpoints ------------------------------------------------------------------------------------------------------


def _tiny_model():
    model = PhysNet(features=8, max_degree=1, num_iterations=1, num_basis_functions=8, cutoff=5.0,
                    max_atomic_number=8)
    return model, init_params(model, 0)


def _full_disk_checkpointer(during_save):
    """A stand-in for orbax's ``PyTreeCheckpointer`` on a full disk: ``save`` calls ``during_save`` (what orbax's
    threads do before the save fails), then raises tensorstore's error."""

    class FullDiskCheckpointer:
        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def save(self, directory, tree):
            during_save()
            raise ValueError("RESOURCE_EXHAUSTED: Failed writing: No space left on device [os_error_code='28']")

    return FullDiskCheckpointer


def test_orbax_thread_errors_of_a_full_disk_give_one_message(tmp_path, monkeypatch, caplog):
    """Orbax logs the failed write of each of its background threads (an ``error:`` line each on a command line)
    besides raising it; the save reports it once, naming the checkpoint, and the old checkpoint stays."""
    model, params = _tiny_model()
    path = checkpoint_format.save_checkpoint(tmp_path / "model", model, params)

    def log_the_thread_error():
        logging.getLogger("absl").error("[process=0][thread=array_type_handler][operation_id=1] "
                                        "_SignalingThread.run() raised an exception: RESOURCE_EXHAUSTED: "
                                        "No space left on device")

    monkeypatch.setattr(checkpoint_format.ocp, "PyTreeCheckpointer", _full_disk_checkpointer(log_the_thread_error))
    with caplog.at_level(logging.WARNING):
        with pytest.raises(CheckpointWriteError, match="the checkpoint that was there is unchanged") as caught:
            checkpoint_format.save_checkpoint(path, model, params, {"changed": True}, overwrite=True)
    assert exit_code(caught.value) == EXIT_OUTPUT and str(path) in str(caught.value)
    assert not [record for record in caplog.records if "_SignalingThread" in record.getMessage()]
    monkeypatch.undo()
    assert load_checkpoint(path, with_metadata=True)[2] == {}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


class _ClosedLoopCompletion:
    """Deleted, it does what tensorstore does when a write of a failed orbax save completes after orbax closed its
    asyncio loop: asyncio's ``call_soon_threadsafe`` raises ``RuntimeError: Event loop is closed`` where nothing can
    catch it, so the interpreter hands it to ``sys.unraisablehook`` (from ``__del__`` here, from C++ there)."""

    def __init__(self):
        self.loop = asyncio.new_event_loop()
        self.loop.close()

    def __del__(self):
        self.loop.call_soon_threadsafe(print)


class _FailingDelete:
    def __del__(self):
        raise ValueError("an unrelated error in __del__")


def test_completions_of_a_failed_orbax_write_print_no_tracebacks(tmp_path, monkeypatch):
    """A 120-300 kB tmpfs probe printed up to 44 bare "RuntimeError: Event loop is closed" tracebacks with the one-line
    error, during the save and after it. They are dropped (logged at debug level) while orbax writes and after a
    failed write; every other unraisable error still reaches the previous hook, which is restored after a write that
    succeeded."""
    model, params = _tiny_model()
    reached = []
    monkeypatch.setattr(sys, "unraisablehook", reached.append)
    checkpoint_format.save_checkpoint(tmp_path / "model", model, params)
    assert sys.unraisablehook == reached.append  # restored after a write that succeeded

    def complete_on_the_closed_loop():
        completion = _ClosedLoopCompletion()
        del completion

    monkeypatch.setattr(checkpoint_format.ocp, "PyTreeCheckpointer",
                        _full_disk_checkpointer(complete_on_the_closed_loop))
    with pytest.raises(CheckpointWriteError, match="No space left on device"):
        checkpoint_format.save_checkpoint(tmp_path / "other", model, params)
    later = _ClosedLoopCompletion()
    del later
    assert reached == []
    unrelated = _FailingDelete()
    del unrelated
    assert [(type(u.exc_value), str(u.exc_value)) for u in reached] == [(ValueError, "an unrelated error in __del__")]
