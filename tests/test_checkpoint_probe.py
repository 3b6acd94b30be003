"""Adversarial probe of checkpoint saving, loading and legacy migration (2026-12-06).

Each test here failed before its fix: a checkpoint under a path holding ``[...]`` was written but could not be
read back, a failed or refused save surfaced as a bare OSError (or a FileExistsError that is no PhysNetInputError),
a symbolic link loop or a deeply nested config.json was a raw RuntimeError/RecursionError, an edited config.json
(with its checksum recomputed) loaded with its parameters unverified or in other units, integer weights were saved,
loaded and migrated, and a legacy checkpoint with impossible attributes or non-numeric weights raised errors that
named no checkpoint. The tests of the file table's paths, raw weights, the filters of orbax's noise and a legacy
checkpoint holding NaN close gaps that a mutation sweep of the checkpoint format found (2026-12-08).
"""

import asyncio
import copy
import json
import logging
import os
import pickle
import re
import shutil
import tempfile
import types
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from physnetjax import PhysNet, init_params, load_checkpoint, save_checkpoint
from physnetjax.checkpoint import CheckpointError, format as ckformat
from physnetjax.checkpoint.errors import CheckpointExistsError, CheckpointWriteError
from physnetjax.checkpoint.legacy import migrate_legacy, read_legacy
from physnetjax.errors import OutputPathError, PhysNetInputError

MODEL = PhysNet(features=4, max_degree=1, num_iterations=1, n_res=1, num_basis_functions=4, cutoff=4.0,
                charges=True, zbl=True)
LEGACY_A = Path(__file__).parent / "data" / "legacy" / "A" / "epoch-30"  # a copy of ../shared's fixture A


@pytest.fixture(scope="module")
def params():
    noisy = jax.tree_util.tree_map(lambda x: x + 0.25 * jnp.ones_like(x), init_params(MODEL, 0))
    return jax.tree_util.tree_map(lambda x: x.astype(jnp.float64), noisy)


@pytest.fixture(scope="module")
def saved(tmp_path_factory, params):
    return save_checkpoint(tmp_path_factory.mktemp("probe") / "model", MODEL, params, {"tag": "saved"})


@pytest.fixture()
def copy_of(saved, tmp_path):
    return Path(shutil.copytree(saved, tmp_path / "copy"))


def same_leaves(a, b) -> bool:
    la, lb = jax.tree_util.tree_leaves_with_path(a), jax.tree_util.tree_leaves_with_path(b)
    return [p for p, _ in la] == [p for p, _ in lb] and all(
        x.dtype == y.dtype and np.array_equal(np.asarray(x), np.asarray(y)) for (_, x), (_, y) in zip(la, lb))


def rewrite_config(path: Path, edit) -> None:
    """Edit config.json and recompute its checksum (what a deliberate or tool-made edit looks like)."""
    config = json.loads((path / "config.json").read_text(encoding="utf-8"))
    edit(config)
    config[ckformat.CONFIG_CHECKSUM_KEY] = ckformat.config_checksum(config)
    (path / "config.json").write_text(json.dumps(config), encoding="utf-8")


# -- paths ------------------------------------------------------------------------------


def test_a_path_holding_brackets_round_trips(tmp_path, params, monkeypatch):
    """Orbax globs the checkpoint's path to merge its OCDBT folders: under ``run[1]/`` it merged nothing, the save
    returned, and the load failed with NOT_FOUND (a run or a migration named so lost every checkpoint)."""
    temporary = tmp_path / "tmp"
    temporary.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temporary))
    path = save_checkpoint(tmp_path / "run[1]" / "model [a]", MODEL, params)
    model, loaded = load_checkpoint(path)
    assert model == MODEL and same_leaves(params, loaded)
    assert list(temporary.iterdir()) == []  # the link it was written through is removed


def test_an_incomplete_orbax_write_is_refused_and_the_old_checkpoint_kept(tmp_path, params, monkeypatch):
    """Should orbax skip its merge again (it logs a line, no error), the save must fail rather than leave
    unreadable arrays."""
    from orbax.checkpoint._src.serialization import ocdbt_utils

    path = save_checkpoint(tmp_path / "ckpt", MODEL, params, {"version": "old"})

    async def skipped_merge(*args, **kwargs):
        return None

    monkeypatch.setattr(ocdbt_utils, "merge_ocdbt_per_process_files", skipped_merge)
    with pytest.raises(CheckpointWriteError, match="manifest.ocdbt was not written"):
        save_checkpoint(path, MODEL, params, {"version": "new"}, overwrite=True)
    monkeypatch.undo()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]
    assert load_checkpoint(path, with_metadata=True)[2] == {"version": "old"}


def test_saving_over_an_existing_path_is_an_input_error_and_still_a_file_exists_error(saved, params):
    with pytest.raises(CheckpointExistsError, match="exists; pass overwrite=True") as caught:
        save_checkpoint(saved, MODEL, params)
    assert isinstance(caught.value, PhysNetInputError) and isinstance(caught.value, FileExistsError)
    assert load_checkpoint(saved, with_metadata=True)[2] == {"tag": "saved"}


def test_a_checkpoint_path_below_a_file_or_empty_is_named(tmp_path, params):
    (tmp_path / "notes.txt").write_text("x", encoding="utf-8")
    with pytest.raises(CheckpointWriteError, match=r"notes.txt is a file, not a folder") as caught:
        save_checkpoint(tmp_path / "notes.txt" / "model", MODEL, params)  # was: [Errno 17] File exists
    assert isinstance(caught.value, OutputPathError)
    with pytest.raises(CheckpointWriteError, match="the checkpoint path is empty"):
        save_checkpoint("", MODEL, params)  # was resolved to the working directory


def test_a_failed_write_is_named_and_keeps_the_old_checkpoint(tmp_path, params, monkeypatch):
    path = save_checkpoint(tmp_path / "ckpt", MODEL, params, {"version": "old"})

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(ckformat, "_write_tree", disk_full)
    with pytest.raises(CheckpointWriteError, match=r"writing the checkpoint .*ckpt failed: OSError: .*No space left"
                                                   r".*the checkpoint that was there is unchanged"):
        save_checkpoint(path, MODEL, params, {"version": "new"}, overwrite=True)
    monkeypatch.undo()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]
    assert load_checkpoint(path, with_metadata=True)[2] == {"version": "old"}


def test_a_failed_clean_up_of_the_replaced_checkpoint_is_no_failed_save(tmp_path, params, monkeypatch, caplog):
    """The new checkpoint was in place when removing the old one (set aside) raised: the save reported an OSError,
    and wrapped as a failed write it would have said that nothing was written."""
    path = save_checkpoint(tmp_path / "ckpt", MODEL, params, {"version": "old"})
    remove = shutil.rmtree

    def stuck(target, *args, **kwargs):
        if ".replaced-" in str(target):
            raise PermissionError(13, "Permission denied", str(target))
        return remove(target, *args, **kwargs)

    monkeypatch.setattr(ckformat.shutil, "rmtree", stuck)
    with caplog.at_level("WARNING", logger="physnetjax.checkpoint.format"):
        assert save_checkpoint(path, MODEL, params, {"version": "new"}, overwrite=True) == path
    monkeypatch.undo()
    assert "saved, but the previous checkpoint set aside as" in caplog.text
    assert load_checkpoint(path, with_metadata=True)[2] == {"version": "new"}


def test_a_symbolic_link_loop_is_named(tmp_path, params):
    os.symlink(tmp_path / "b", tmp_path / "a")
    os.symlink(tmp_path / "a", tmp_path / "b")
    with pytest.raises(CheckpointError, match="loop of symbolic links"):
        load_checkpoint(tmp_path / "a")
    with pytest.raises(CheckpointError, match="loop of symbolic links"):
        save_checkpoint(tmp_path / "a", MODEL, params)


# -- tampered config.json -----------------------------------------------------------------


def test_a_deeply_nested_config_is_corruption_not_a_recursion_error(copy_of):
    (copy_of / "config.json").write_text("[" * 100_000 + "]" * 100_000, encoding="utf-8")
    with pytest.raises(CheckpointError, match="corrupted: config.json is not valid JSON"):
        load_checkpoint(copy_of)


@pytest.mark.parametrize("edit, message", [
    (lambda c: c.update(format_version=True), "config.json has no integer format_version"),
    (lambda c: c.update(files={}), "lists no file of params/, so the parameters cannot be verified"),
    (lambda c: c["files"].update({"../model/config.json": {"size": 1, "sha256": "0"}}),
     "lists the file '../model/config.json', which is not under params/ or train_state/"),
    (lambda c: c["units"].update(length="bohr"), 'gives the units {"length": "bohr"'),
    (lambda c: c["model"].update(param_dtype="int32"), "model config not understood .*cannot be built"),
    (lambda c: c["model"].update(features=8), r"params do not fit the stored model: params/.*: shape \(.*4.*\), "
                                              r"model expects \(.*8.*\)"),
], ids=["version-bool", "no-files", "file-outside", "units", "int-dtype", "features"])
def test_an_edited_config_with_a_recomputed_checksum_is_still_checked(copy_of, edit, message):
    rewrite_config(copy_of, edit)
    with pytest.raises(CheckpointError, match=message):
        load_checkpoint(copy_of)


def test_the_file_table_lists_only_relative_paths_under_params_and_train_state():
    inside = ["params/a", "train_state/d/_METADATA"]
    outside = ["params", "train_state", "other/a", "/params/a", "params//a", "params/./a", "params/x/../y",
               "params/../config.json", "params/a/", ""]
    assert [ckformat._inside_checkpoint(name) for name in inside] == [True, True]
    assert [ckformat._inside_checkpoint(name) for name in outside] == [False] * len(outside)


def test_raw_weights_are_the_train_states_and_refused_where_there_are_none(tmp_path, params):
    """weights="raw" reads the raw weights a trainer saves in its train state beside the EMA weights; a checkpoint
    without a train state, with its train_state/ folder removed, or whose train state holds no 'params', is refused
    with a message, never answered with the saved (EMA) weights."""
    raw = jax.tree_util.tree_map(lambda x: x + 1.0, params)
    trained = save_checkpoint(tmp_path / "runs" / "a" / "trained", MODEL, params,  # its folders are created
                              train_state={"params": raw, "step": 3})
    assert same_leaves(load_checkpoint(trained, weights="raw")[1], raw)
    assert same_leaves(load_checkpoint(trained)[1], params)
    bare = save_checkpoint(tmp_path / "bare", MODEL, params)
    with pytest.raises(CheckpointError, match=r"weights='raw' reads the raw weights of the train state saved with a "
                                              r"training checkpoint, and this one holds none"):
        load_checkpoint(bare, weights="raw")
    no_params = save_checkpoint(tmp_path / "no_params", MODEL, params, train_state={"ema_params": raw})
    with pytest.raises(CheckpointError, match=r"its train state holds no raw parameters \('params'\)"):
        load_checkpoint(no_params, weights="raw")
    shutil.rmtree(trained / "train_state")
    with pytest.raises(CheckpointError, match=r"its train_state/ folder, which held the raw weights, was removed"):
        load_checkpoint(trained, weights="raw")
    with pytest.raises(ValueError, match=r"weights must be one of \('ema', 'raw'\), received 'best'"):
        load_checkpoint(bare, weights="best")


def test_only_orbax_noise_of_failed_writes_is_kept_off_stderr(tmp_path):
    """What a failed orbax write reports later is dropped, and nothing else: the RuntimeError "Event loop is closed"
    of asyncio's call_soon_threadsafe (not the same error raised elsewhere, also in asyncio, another error there,
    or another message); asyncio's never-retrieved task records of the failed directory (not of another directory,
    nor other records naming it); orbax's records of its failed background threads (not its other records)."""
    loop = asyncio.new_event_loop()
    loop.close()
    with pytest.raises(RuntimeError, match="Event loop is closed") as closed:
        loop.call_soon_threadsafe(print)
    with pytest.raises(RuntimeError, match="Event loop is closed") as elsewhere_in_asyncio:
        loop.call_soon(print)

    def raised(error):
        try:
            raise error
        except BaseException as caught:
            return caught.__traceback__

    def unraisable(exc_type, message, traceback):
        return types.SimpleNamespace(exc_type=exc_type, exc_value=exc_type(message), exc_traceback=traceback)

    seen = []
    hook = ckformat._ClosedLoopCallbacksDropped(seen.append)
    dropped = unraisable(RuntimeError, "Event loop is closed", closed.tb)
    kept = [unraisable(RuntimeError, "Event loop is closed", raised(RuntimeError("Event loop is closed"))),
            unraisable(RuntimeError, "Event loop is closed", elsewhere_in_asyncio.tb),
            unraisable(ValueError, "Event loop is closed", closed.tb),
            unraisable(RuntimeError, "Event loop is running", closed.tb)]
    for case in [dropped] + kept:
        hook(case)
    assert seen == kept

    def record(message, name="asyncio"):
        return logging.LogRecord(name, logging.ERROR, __file__, 1, message, None, None)

    tasks = ckformat._UnretrievedTasksOf(tmp_path / "model")
    assert not tasks.filter(record(f"Task exception was never retrieved\nfuture: <Task {tmp_path / 'model'}/params>"))
    assert not tasks.filter(record(f"Future exception was never retrieved: {tmp_path / 'model'}/params"))
    assert tasks.filter(record(f"Task exception was never retrieved: {tmp_path / 'other'}/params"))
    assert tasks.filter(record(f"Executing <Task {tmp_path / 'model'}/params> took 0.2 seconds"))
    threads = ckformat._BackgroundThreadErrors()
    assert not threads.filter(record("_SignalingThread.run() raised an exception", "absl"))
    assert threads.filter(record("Finished saving checkpoint", "absl"))


# -- non-float weights ---------------------------------------------------------------------


def test_integer_weights_are_neither_saved_nor_loaded(copy_of, tmp_path, params):
    rounded = jax.tree_util.tree_map(lambda x: x.astype(jnp.int32), params)
    with pytest.raises(CheckpointError, match=r"parameters must be floating-point arrays, found params/.*: int32"):
        save_checkpoint(tmp_path / "rounded", MODEL, rounded)
    assert not (tmp_path / "rounded").exists()
    shutil.rmtree(copy_of / "params")  # the same, written past save_checkpoint's check
    ckformat._write_tree(copy_of / "params", rounded)
    rewrite_config(copy_of, lambda c: c.update(files=ckformat._file_table(copy_of, ["params"])))
    with pytest.raises(CheckpointError, match=r"copy: parameters must be floating-point arrays, found .*int32"):
        load_checkpoint(copy_of)


# -- legacy ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def legacy_raw():
    return read_legacy(LEGACY_A)[1]


def test_a_legacy_checkpoint_holding_nan_is_refused_on_loading(tmp_path, legacy_raw):
    """load_checkpoint migrates a legacy checkpoint in memory; a NaN EMA weight (a diverged training) is refused by
    the migration, naming the array, and the raw weights load where they are finite."""
    raw = copy.deepcopy(legacy_raw)
    raw["ema_params"]["params"]["Dense_0"]["0+"]["kernel"][0, 0] = np.nan
    (tmp_path / "run").mkdir()
    with open(tmp_path / "run" / "ckpt.pkl", "wb") as handle:
        pickle.dump(raw, handle)
    with pytest.raises(CheckpointError, match=r"the ema_params hold NaN or Inf in params/Dense_0/0\+/kernel: every "
                                              r"prediction would be NaN"):
        load_checkpoint(tmp_path / "run" / "ckpt.pkl", allow_pickle=True)
    with pytest.warns(UserWarning):
        _, params = load_checkpoint(tmp_path / "run" / "ckpt.pkl", weights="raw", allow_pickle=True)
    assert all(np.isfinite(np.asarray(leaf)).all() for leaf in jax.tree_util.tree_leaves(params))


def pickled(tmp_path: Path, raw: dict) -> Path:
    path = tmp_path / "legacy.pkl"
    path.write_bytes(pickle.dumps(raw))
    return path


@pytest.mark.parametrize("attribute, value, message", [
    ("features", 0, "features must be at least 1, received 0"),
    ("n_res", 0, "n_res must be at least 1"),
    ("num_basis_functions", 0, "num_basis_functions must be at least 1"),
])
def test_legacy_attributes_no_model_can_have_are_named_with_the_checkpoint(tmp_path, legacy_raw, attribute, value,
                                                                          message):
    raw = {**legacy_raw, "model_attributes": {**legacy_raw["model_attributes"], attribute: value}}
    path = pickled(tmp_path, raw)
    with pytest.raises(CheckpointError, match=re.escape(f"legacy checkpoint {path}: its model_attributes describe "
                                                        f"no model physnetjax can build ({message}")):
        migrate_legacy(path, allow_pickle=True)


@pytest.mark.parametrize("value, found", [
    (lambda k: k.astype(np.int32), "int32 values of shape (32, 32)"),
    (lambda k: np.asarray("abc"), "<U3 values of shape ()"),
], ids=["int", "text"])
def test_legacy_weights_that_are_not_floats_are_named(tmp_path, legacy_raw, value, found):
    ema = legacy_raw["ema_params"]["params"]
    dense = {**ema["Dense_0"], "0+": {**ema["Dense_0"]["0+"], "kernel": value(ema["Dense_0"]["0+"]["kernel"])}}
    raw = {**legacy_raw, "ema_params": {"params": {**ema, "Dense_0": dense}}}
    path = pickled(tmp_path, raw)
    with pytest.raises(CheckpointError, match=re.escape(f"ema_params/params/Dense_0/0+/kernel holds {found}")
                                              + ".*not floating-point weights"):
        migrate_legacy(path, allow_pickle=True)


def test_a_legacy_index_entry_without_its_value_type_is_named(tmp_path):
    copy = Path(shutil.copytree(LEGACY_A, tmp_path / "epoch-30"))
    for entry in [copy, *copy.rglob("*")]:
        entry.chmod(0o755 if entry.is_dir() else 0o644)
    index = json.loads((copy / "_METADATA").read_text(encoding="utf-8"))
    key = next(k for k in index["tree_metadata"] if "ema_params" in k and "Dense_0" in k)
    del index["tree_metadata"][key]["value_metadata"]["value_type"]
    (copy / "_METADATA").write_text(json.dumps(index), encoding="utf-8")
    with pytest.raises(CheckpointError, match=re.escape(f"legacy checkpoint {copy} is corrupted or unreadable: an "
                                                        "entry lacks the key 'value_type'")):
        migrate_legacy(copy)
