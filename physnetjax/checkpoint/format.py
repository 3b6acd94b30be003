"""The physnetjax checkpoint format (versions 1 and 2): a directory, written atomically.

Layout of a checkpoint ``path/``::

    config.json     {"format_version": 1 or 2, "library_version": "...", "model": model.config(),
                     "units": {...}, "metadata": {...}, "files": {relative path: {size, sha256}},
                     "config_sha256": hex}
    params/         orbax PyTree checkpoint of the variables {"params": {...}}
    train_state/    optional orbax PyTree checkpoint of an arbitrary pytree (optimizer
                    state, EMA parameters, RNG key, epoch, ...) for exact resume

``config.json`` is written last and lists the size and SHA-256 of every file under
``params/`` and ``train_state/``; :func:`load_checkpoint` checks them, so a deleted
or truncated file is reported by name instead of surfacing as an obscure
tensorstore error. ``config_sha256`` covers ``config.json`` itself (model
hyper-parameters, element energies, cutoffs, metadata: every other number that
enters a prediction): the SHA-256 of its canonical JSON (keys sorted, compact
separators) without that key. Checkpoints written before it existed have no
``config_sha256`` and load as before.

The whole directory is first written to a hidden sibling (``.NAME.partial-XXXX``)
and renamed into place, so an interrupted save never leaves a directory under the
requested name. Replacing a checkpoint renames the old one to
``.NAME.replaced-XXXX`` first; if the process dies before the new one is in
place, the next load or save of ``NAME`` renames the old one back (with a
warning), so the old checkpoint survives any crash.

Version 2 adds ensembles (:class:`~physnetjax.ensemble.PhysNetEnsemble`): ``model`` is
``{"ensemble_size": K, "calibration_scale": s, "member": PhysNet.config()}`` and every
leaf under ``params/`` has a leading axis of length K (member k at index k). A
single-model checkpoint is still written as version 1 (its layout did not change),
so older physnetjax versions keep reading it; they refuse an ensemble by its version.

No pickle is ever read from a new-format checkpoint; orbax stores arrays in
tensorstore/zarr and the rest is JSON.
"""

from __future__ import annotations

import functools
import glob
import hashlib
import json
import logging
import os
import re
import shutil
import sys
import tempfile
import traceback
import uuid
from pathlib import Path
from typing import Any, Callable

import flax.serialization
import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
from orbax.checkpoint import metadata as ocp_metadata

from physnetjax.checkpoint.errors import (CheckpointError, CheckpointExistsError, CheckpointNotFoundError,
                                          CheckpointOverwriteError, CheckpointWriteError)
from physnetjax.checkpoint.settled_reads import raise_failed_read, settled_registry
from physnetjax.errors import OutputPathError, PhysNetInputWarning, warn_caller

FORMAT_VERSION = 2
"""Newest on-disk layout this library reads and writes (2 for ensembles, 1 for single models)."""

SINGLE_MODEL_FORMAT_VERSION = 1
"""Version written for a single PhysNet (unchanged since version 1)."""

CONFIG_FILE = "config.json"
PARAMS_DIR = "params"
TRAIN_STATE_DIR = "train_state"

UNITS = {
    "length": "Å",
    "energy": "eV",
    "forces": "eV/Å",
    "charge": "e",
    "dipole": "e·Å",
}
"""Units of every quantity the stored model consumes and produces."""

WEIGHT_CHOICES = ("ema", "raw")

logger = logging.getLogger(__name__)


def absolute_path(path) -> Path:
    """``path`` expanded and made absolute (orbax refuses relative paths), its symbolic links resolved.

    Raises:
      CheckpointError: ``path`` goes through a loop of symbolic links (Python raised a bare RuntimeError).
    """
    expanded = Path(path).expanduser()
    try:
        return expanded.resolve()
    except (RuntimeError, OSError) as error:  # Python < 3.13: RuntimeError("Symlink loop ..."); later: OSError ELOOP
        raise CheckpointError(f"{expanded} cannot be used as a checkpoint path: it goes through a loop of symbolic "
                              f"links ({error}); point the link at a real directory") from None


def is_checkpoint(path) -> bool:
    """True when ``path`` is a directory holding a new-format ``config.json``."""
    return (absolute_path(path) / CONFIG_FILE).is_file()


CHECKPOINT_ENTRIES = frozenset({CONFIG_FILE, PARAMS_DIR, TRAIN_STATE_DIR})
"""Everything a checkpoint directory holds; a directory with anything else is not replaced."""


def is_training_run(path) -> bool:
    """True when ``path`` is a training run directory: its checkpoints in ``checkpoints/`` beside ``model.json``."""
    root = absolute_path(path)
    return (root / "model.json").is_file() and (root / "checkpoints").is_dir()


def training_run_of(path) -> Path | None:
    """The training run directory whose checkpoint ``path`` is, else None.

    A run keeps its checkpoints in ``RUN_DIR/checkpoints/epoch-NNNN`` beside ``RUN_DIR/model.json``;
    ``best`` and ``latest`` are links to them, so the path is resolved first.
    """
    target = absolute_path(path)
    if target.parent.name == "checkpoints" and is_training_run(target.parent.parent):
        return target.parent.parent
    return None


def check_not_a_run_checkpoint(path, what: str) -> None:
    """Refuse to write a new checkpoint over a training run's own (it would lose the run's weights and resume state).

    Raises:
      OutputPathError: ``path`` (after links) exists and is a checkpoint of a training run (:func:`training_run_of`).
    """
    if absolute_path(path).exists() and (run := training_run_of(path)) is not None:
        raise OutputPathError(f"refusing to write {what} {path}: it is {absolute_path(path)}, a checkpoint of the "
                              f"training run {run}, whose trained weights and resume state it would replace; "
                              f"choose another {what}")


def _run_directory_hint(root: Path) -> str:
    """A hint when ``root`` looks like a training run directory (its checkpoints are ``best``/``latest``), else ""."""
    if any((root / name).is_dir() for name in ("best", "latest")):
        return f"; it looks like a training run directory: its checkpoints are {root / 'best'} and {root / 'latest'}"
    return ""


def _checkpoints_inside_hint(root: Path) -> str:
    """A hint naming the checkpoints one level inside directory ``root`` (a training run's ``best``/``latest``, a
    shipped model's ``model``), else ""."""
    if not root.is_dir():
        return ""
    if hint := _run_directory_hint(root):
        return hint
    inside = sorted(str(entry) for entry in root.iterdir() if entry.is_dir() and is_checkpoint(entry))
    if not inside:
        return ""
    if len(inside) == 1:
        return f"; it holds the checkpoint {inside[0]}: pass that"
    return f"; it holds the checkpoints {', '.join(inside[:5])}{' ...' if len(inside) > 5 else ''}: pass one of them"


def _check_replaceable(target: Path, companions: frozenset = frozenset()) -> None:
    """Raise CheckpointOverwriteError unless ``target`` holds nothing but a checkpoint (and the ``companions`` files).

    ``save_checkpoint(..., overwrite=True)`` deletes the old directory; a training run
    directory also has a ``config.json`` (the run's settings), so that file alone does not
    make a directory safe to delete.
    """
    if not target.is_dir() or not is_checkpoint(target):
        raise CheckpointOverwriteError(f"refusing to overwrite {target}: it is not a physnetjax checkpoint")
    others = sorted(entry.name for entry in target.iterdir()
                    if entry.name not in CHECKPOINT_ENTRIES and entry.name not in companions)
    if others:
        raise CheckpointOverwriteError(f"refusing to overwrite {target}: besides a checkpoint it holds "
                              f"{', '.join(others[:5])}{' ...' if len(others) > 5 else ''}"
                              f"{_run_directory_hint(target)}")


# -- pytree <-> orbax ------------------------------------------------------------------


def _storable(tree):
    """State dict of ``tree`` (namedtuples/dataclasses → dicts), typed PRNG keys as key data."""

    def leaf(x):
        if isinstance(x, jax.Array) and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
            return jax.random.key_data(x)
        return x

    return jax.tree_util.tree_map(leaf, flax.serialization.to_state_dict(tree))


def _write_tree(directory: Path, tree) -> None:
    """Save ``tree`` as an orbax PyTree checkpoint in ``directory`` and check that orbax finished it.

    Orbax finds the per-process OCDBT folders it merges into the checkpoint's root with a glob
    of the directory's path; a path holding ``[...]`` (``run[1]/model``) matches nothing, the
    merge is skipped with a log line only, and the arrays are unreadable (NOT_FOUND at load).
    Such a directory is therefore written through a symbolic link whose path has no glob
    characters. A tree orbax left without its root manifest raises instead of being kept.

    Raises:
      CheckpointWriteError: orbax left the checkpoint incomplete.
    """
    alias_home = None
    written = directory
    if glob.has_magic(str(directory)):
        alias_home = Path(tempfile.mkdtemp(prefix="physnetjax-write-"))
        if glob.has_magic(str(alias_home)):
            shutil.rmtree(alias_home, ignore_errors=True)
            raise CheckpointWriteError(f"cannot write a checkpoint at {directory}: its path holds glob characters "
                                       "([, ], *, ?) that orbax misreads, and so does the temporary folder "
                                       f"{alias_home}; choose a path without them")
        os.symlink(directory.parent, alias_home / "target", target_is_directory=True)
        written = alias_home / "target" / directory.name
    orbax_log = logging.getLogger("absl")
    thread_errors = _BackgroundThreadErrors()
    orbax_log.addFilter(thread_errors)
    undo_hook = _drop_closed_loop_callbacks()
    try:
        # Closing the checkpointer (context manager) joins orbax's background threads; left to
        # the garbage collector they outlive their asyncio loop ("Event loop is closed").
        with ocp.PyTreeCheckpointer() as checkpointer:
            checkpointer.save(written, _storable(tree))
    except (OSError, ValueError):
        _keep_failed_io_quiet(directory.parent)  # the hook stays: a failed write's futures may complete later
        raise
    else:
        undo_hook()
    finally:
        orbax_log.removeFilter(thread_errors)
        if alias_home is not None:
            shutil.rmtree(alias_home, ignore_errors=True)
    per_process = any(entry.name.startswith("ocdbt.process_") for entry in directory.iterdir())
    if per_process and not (directory / "manifest.ocdbt").is_file():
        raise CheckpointWriteError(f"orbax left the checkpoint arrays in {directory} incomplete (its OCDBT "
                                   "manifest.ocdbt was not written), so they could not be read back")


class _BackgroundThreadErrors(logging.Filter):
    """Drops orbax's log records (with their tracebacks) of a failed write in one of its background threads: the save
    raises the same error, which :func:`save_checkpoint` reports once, naming the checkpoint (a full disk printed one
    such record per thread besides that line)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "_SignalingThread.run() raised an exception" not in record.getMessage()


TREE_INDEX = "_METADATA"
"""Orbax's index of a PyTree checkpoint (JSON: every saved array's path and type)."""


def read_tree(directory: Path):
    """Raw restore of an orbax PyTree checkpoint: nested dicts of NumPy arrays and scalars.

    Restoring as NumPy (not as sharded jax.Arrays) makes a checkpoint written on a
    GPU readable on a CPU-only machine.

    Raises:
      ValueError: a damaged checkpoint, with the cause: ``_METADATA`` that is not the JSON
        orbax writes (truncated or overwritten), or tensorstore's error reading the arrays
        (naming the file or array; its long JSON spec left out). Orbax's own log lines about
        the failure (a warning, unretrieved asyncio tasks) are kept off the terminal, and every
        read has ended when it is raised (:mod:`physnetjax.checkpoint.settled_reads`).
    """

    def restore_args(meta):
        if meta is None:
            return None
        if isinstance(meta, ocp_metadata.ArrayMetadata):
            return ocp.RestoreArgs(restore_type=np.ndarray)
        return ocp.RestoreArgs()

    _check_tree_index(directory)
    try:
        with ocp.Checkpointer(ocp.PyTreeCheckpointHandler(type_handler_registry=settled_registry())) as checkpointer:
            # The handler's metadata raises the real error; the checkpointer's logs it and returns None.
            tree = _item_metadata(directory).tree
            args = jax.tree_util.tree_map(restore_args, tree, is_leaf=lambda x: x is None)
            restored = checkpointer.restore(directory, args=ocp.args.PyTreeRestore(restore_args=args))
        raise_failed_read(restored)
        return restored
    except ValueError as error:
        message = _tensorstore_message(error)
        if re.match(r"[A-Z_]+: ", message):  # tensorstore's status (DATA_LOSS, OUT_OF_RANGE, ...): damaged files
            message += (" (a file of the checkpoint is truncated, missing or overwritten: copy the checkpoint again "
                        "from where it was saved)")
        raise ValueError(message) from error


def _check_tree_index(directory: Path) -> None:
    """Raise ValueError naming ``_METADATA`` when it is not a JSON object with ``tree_metadata``."""
    index = directory / TREE_INDEX
    if not index.is_file():
        return  # orbax says what is missing
    try:
        tree_index = json.loads(index.read_bytes())
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as error:
        raise ValueError(f"{index} ({index.stat().st_size} bytes), the index of the saved arrays, is not valid JSON "
                         f"({error}): the file is truncated or overwritten") from None
    if not isinstance(tree_index, dict) or not isinstance(tree_index.get("tree_metadata"), dict):
        raise ValueError(f"{index}, the index of the saved arrays, has no tree_metadata: the file is overwritten")


def _item_metadata(directory: Path):
    """Orbax's tree metadata of ``directory`` (the handler's: it raises the real error).

    Every value's metadata is read to its end (:mod:`physnetjax.checkpoint.settled_reads`) and the
    first failure in tree order raised. Should orbax still leave a failed read of the same files
    as an asyncio task, whose error asyncio logs with a traceback when it is collected (often at
    exit), :class:`_UnretrievedTasksOf` keeps those of ``directory`` off the log.
    """
    handler = ocp.PyTreeCheckpointHandler(type_handler_registry=settled_registry())
    try:
        metadata = handler.metadata(directory)
        raise_failed_read(metadata.tree)
        return metadata
    except ValueError:
        _keep_failed_io_quiet(directory)
        raise
    finally:
        handler.close()


def _keep_failed_io_quiet(directory: Path) -> None:
    """After orbax failed to read or write under ``directory`` (raised as one error the caller reports): what its
    failed asynchronous work reports later, when collected or at exit, stays off stderr.

    That is asyncio's "Task exception was never retrieved" records of the tasks of ``directory``
    (:class:`_UnretrievedTasksOf`) and tensorstore's completions of futures whose asyncio loop orbax has already
    closed (:class:`_ClosedLoopCallbacksDropped`, installed once as ``sys.unraisablehook``).
    """
    logging.getLogger("asyncio").addFilter(_UnretrievedTasksOf(directory))
    _drop_closed_loop_callbacks()


def _drop_closed_loop_callbacks() -> Callable[[], None]:
    """Install :class:`_ClosedLoopCallbacksDropped` as ``sys.unraisablehook`` (unless it is already); returns the
    function that restores the previous hook (a no-op if it was installed before or has since been replaced)."""
    if isinstance(sys.unraisablehook, _ClosedLoopCallbacksDropped):
        return lambda: None
    hook = sys.unraisablehook = _ClosedLoopCallbacksDropped(sys.unraisablehook)

    def undo() -> None:
        if sys.unraisablehook is hook:
            sys.unraisablehook = hook.previous

    return undo


class _ClosedLoopCallbacksDropped:
    """``sys.unraisablehook`` that logs at debug level the ``RuntimeError: Event loop is closed`` raised in asyncio's
    ``call_soon_threadsafe`` and hands every other unraisable exception to the hook it replaced.

    Tensorstore completes the writes of a failed orbax save (a full disk) in its own threads, some after orbax
    closed the asyncio loop that awaited them, during the save or later; each such completion raised into the
    unraisable hook, which printed a bare traceback (up to 44 in one run of a 300 kB tmpfs probe, 2026-12-06) besides
    the command's one-line error. Installed for every write (:func:`_write_tree`) and kept after a failed one.
    """

    def __init__(self, previous):
        self.previous = previous

    def __call__(self, unraisable) -> None:
        if self.is_closed_loop_callback(unraisable):
            logger.debug("dropped an asyncio callback of a failed orbax read or write: its loop is closed")
            return
        self.previous(unraisable)

    @staticmethod
    def is_closed_loop_callback(unraisable) -> bool:
        if unraisable.exc_type is not RuntimeError or str(unraisable.exc_value) != "Event loop is closed":
            return False
        return any(frame.name == "call_soon_threadsafe" and "asyncio" in Path(frame.filename).parts
                   for frame in traceback.extract_tb(unraisable.exc_traceback))


class _UnretrievedTasksOf(logging.Filter):
    """Drops asyncio's "Task exception was never retrieved" records of reads (or failed writes) of one directory."""

    def __init__(self, directory: Path):
        super().__init__()
        self.directory = str(directory)

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not (message.startswith(("Task exception was never retrieved", "Future exception was never retrieved"))
                    and self.directory in message)


def _tensorstore_message(error: BaseException) -> str:
    """Tensorstore's message without its ``[tensorstore_spec='...']`` (a page of JSON)."""
    return re.sub(r"\s*\[tensorstore_spec=.*\Z", "", str(error), flags=re.DOTALL)


# -- integrity -------------------------------------------------------------------------


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _file_table(root: Path, subdirs: list[str]) -> dict:
    """{relative path: {"size": bytes, "sha256": hex}} of every file under ``root/subdir``."""
    table = {}
    for sub in subdirs:
        for file in sorted((root / sub).rglob("*")):
            if file.is_file():
                table[file.relative_to(root).as_posix()] = {"size": file.stat().st_size, "sha256": _sha256(file)}
    return table


CONFIG_CHECKSUM_KEY = "config_sha256"


def config_checksum(config: dict) -> str:
    """SHA-256 of the canonical JSON of ``config`` without its ``config_sha256`` entry."""
    body = {key: value for key, value in config.items() if key != CONFIG_CHECKSUM_KEY}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=_json_value)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _verify_config(root: Path, config: dict) -> None:
    """Raise CheckpointError when ``config.json`` was changed after it was written.

    A ``config.json`` without a checksum (written before checkpoints had one, or with the
    entry deleted) cannot be verified: it loads with a :class:`PhysNetInputWarning`.
    """
    expected = config.get(CONFIG_CHECKSUM_KEY)
    if expected is None:
        warn_caller(f"checkpoint {root}: {CONFIG_FILE} has no {CONFIG_CHECKSUM_KEY} (written before checkpoints "
                    "recorded one, or the entry was removed), so an edit of its settings cannot be detected; save "
                    "it again with save_checkpoint to protect it", PhysNetInputWarning)
        return
    if config_checksum(config) != expected:
        raise CheckpointError(
            f"checkpoint {root} is corrupted: {CONFIG_FILE} fails its SHA-256 check (edited after saving? a "
            "changed element energy or cutoff shifts every prediction); restore the original file, or load it "
            "with the edit and save it again with save_checkpoint"
        )


def _verify_files(root: Path, table: dict) -> None:
    """Raise CheckpointError naming the first missing, truncated or altered file."""
    for name, expected in table.items():
        file = root / name
        if not file.is_file():
            raise CheckpointError(f"checkpoint {root} is corrupted: file {name} is missing")
        size = file.stat().st_size
        if size != expected["size"]:
            raise CheckpointError(
                f"checkpoint {root} is corrupted: file {name} has {size} bytes, expected {expected['size']} "
                "(truncated or overwritten)"
            )
        if _sha256(file) != expected["sha256"]:
            raise CheckpointError(f"checkpoint {root} is corrupted: file {name} fails its SHA-256 check")


# -- parameters vs model ---------------------------------------------------------------


def _flat_shapes(tree) -> dict:
    return {
        "/".join(str(k.key) for k in path): tuple(np.shape(leaf))
        for path, leaf in jax.tree_util.tree_flatten_with_path(flax.serialization.to_state_dict(tree))[0]
    }


def expected_param_shapes(model) -> dict[str, tuple]:
    """``{"params/Embed_0/embedding": shape, ...}`` of the variables ``model`` creates.

    Only shapes are computed (``jax.eval_shape``: no initialisation is run), once
    per model configuration.
    """
    return dict(_cached_param_shapes(model))


@functools.lru_cache(maxsize=64)
def _cached_param_shapes(model) -> tuple:
    from physnetjax.predict import init_params

    return tuple(_flat_shapes(jax.eval_shape(lambda: init_params(model, 0))).items())


def param_mismatches(model, params) -> list[str]:
    """Differences between ``params`` and the variables ``model`` creates; empty if they match.

    Each entry names a parameter path that is missing, unexpected, or of the wrong
    shape, e.g. ``"params/energy_bias: missing"``.
    """
    want = expected_param_shapes(model)
    have = _flat_shapes(params)
    problems = [f"{name}: missing" for name in sorted(set(want) - set(have))]
    problems += [f"{name}: not a parameter of this model" for name in sorted(set(have) - set(want))]
    problems += [
        f"{name}: shape {have[name]}, model expects {want[name]}"
        for name in sorted(set(want) & set(have))
        if have[name] != want[name]
    ]
    return problems


def nonfinite_parameters(params) -> list[str]:
    """The parameter arrays of ``params`` holding NaN or ±Inf: ``"params/Dense_0/0+/bias: 1 of 8 values"`` each."""
    found = []
    for path, leaf in jax.tree_util.tree_flatten_with_path(flax.serialization.to_state_dict(params))[0]:
        values = np.asarray(leaf)
        if not np.issubdtype(values.dtype, np.inexact):
            continue
        bad = int(values.size - np.count_nonzero(np.isfinite(values)))
        if bad:
            found.append(f"{'/'.join(str(k.key) for k in path)}: {bad} of {values.size} values")
    return found


def nonfloat_parameters(params) -> list[str]:
    """The parameter arrays of ``params`` that are not floating point: ``"params/Dense_0/0+/bias: int32"`` each.

    Every weight of a PhysNet is real; integer or boolean arrays (weights cast with ``astype(int)``) would be
    saved and evaluated without complaint, every weight rounded.
    """
    found = []
    for path, leaf in jax.tree_util.tree_flatten_with_path(flax.serialization.to_state_dict(params))[0]:
        dtype = np.asarray(leaf).dtype
        if not jnp.issubdtype(dtype, jnp.floating):  # jnp's knows bfloat16
            found.append(f"{'/'.join(str(k.key) for k in path)}: {dtype}")
    return found


def _check_float64_kept(model, params) -> None:
    """Raise CheckpointError when ``model`` has float64 parameters (trained with ``--float64``) but ``params`` hold
    narrower floating-point arrays: weights rounded on the way (loaded while JAX's 64-bit mode was off), which the
    checkpoint would store under a float64 model, the rounding never to be undone."""
    member = getattr(model, "member", model)
    if np.dtype(member.param_dtype) != np.float64:
        return
    narrower = sorted({np.asarray(leaf).dtype.name for leaf in jax.tree_util.tree_leaves(params)} - {"float64"})
    if narrower:
        raise CheckpointError(f"params to save: the model's parameters are float64 (param_dtype; a model trained "
                              f"with --float64) but the arrays are {', '.join(narrower)}: the weights were rounded, "
                              "e.g. loaded while JAX's 64-bit mode was off; call jax.config.update('jax_enable_x64', "
                              "True) before loading the checkpoint, or save a model.clone(param_dtype=...) of the "
                              "arrays' precision")


def _check_float(params, what: str) -> None:
    """Raise CheckpointError naming the arrays of ``params`` that are not floating point (``what``: whose they are)."""
    found = nonfloat_parameters(params)
    if found:
        raise CheckpointError(f"{what}: parameters must be floating-point arrays, found {'; '.join(found[:5])}"
                              f"{f'; and {len(found) - 5} more arrays' if len(found) > 5 else ''}")


def _check_finite(params, what: str) -> None:
    """Raise CheckpointError naming the arrays of ``params`` that hold NaN or ±Inf (``what``: whose they are)."""
    found = nonfinite_parameters(params)
    if found:
        raise CheckpointError(f"{what}: parameters hold NaN or Inf ({'; '.join(found[:5])}"
                              f"{f'; and {len(found) - 5} more arrays' if len(found) > 5 else ''}): the weights of "
                              "a diverged training are not a model; use a checkpoint saved before it diverged")


# -- save ------------------------------------------------------------------------------


def _json_value(value):
    if isinstance(value, (np.ndarray, np.generic, jax.Array)):
        return np.asarray(value).tolist()
    raise TypeError(f"{type(value).__name__} is not JSON-serialisable")


def check_metadata_keys(metadata, where: str = "metadata") -> None:
    """Refuse checkpoint metadata that JSON would not give back: not a dict (the checkpoint then loaded as
    corrupted), or a key that is not a string at any level (JSON writes 1 as "1", which then replaces a key "1").

    Raises:
      TypeError: naming the key and where it is.
    """
    if not isinstance(metadata, dict):
        raise TypeError(f"{where} must be a dict (a JSON object), received {type(metadata).__name__}")
    _check_json_keys(metadata, where)


def _check_json_keys(value, where: str) -> None:
    """TypeError for a dict key below ``value`` (reached as ``where``) that is not a string."""
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise TypeError(f"{where} key {key!r} is a {type(key).__name__}: keys must be strings (JSON stores 1 "
                                "as \"1\", where it can replace another key)")
            _check_json_keys(item, f"{where}[{key!r}]")
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            _check_json_keys(item, f"{where}[{index}]")


def save_checkpoint(
    path,
    model,
    params,
    metadata: dict | None = None,
    *,
    train_state: Any = None,
    overwrite: bool = False,
    companions: tuple = (),
) -> Path:
    """Write ``model`` and ``params`` (and optionally a train state) as a checkpoint directory.

    Args:
      path: checkpoint directory to create (relative paths are resolved).
      model: a :class:`physnetjax.PhysNet` or a
        :class:`~physnetjax.ensemble.PhysNetEnsemble`; its ``config()`` is stored as JSON.
      params: its variables ``{"params": {...}}`` (the weights to deploy, usually EMA);
        for an ensemble stacked, with a leading member axis on every leaf.
      metadata: JSON-serialisable dict (E0s, units of the training data, epochs,
        losses, provenance...); NumPy/JAX arrays are stored as nested lists.
      train_state: any pytree (optimizer state, EMA and raw params, RNG key, epoch,
        ...) for :func:`load_train_state`. Namedtuples and dataclasses are stored as
        dicts and rebuilt from a ``target``; typed PRNG keys are stored as key data.
      overwrite: replace an existing checkpoint at ``path``. Only a directory that
        is itself a physnetjax checkpoint, holding nothing else, is ever replaced.
      companions: names of files the caller writes beside the checkpoint (migrate's
        report) that an overwrite may delete with it; the caller writes them anew.

    Returns:
      The absolute path of the checkpoint.

    Raises:
      CheckpointExistsError: ``path`` exists and ``overwrite`` is False (a ``FileExistsError`` too).
      CheckpointError: ``overwrite`` would delete something that is not a checkpoint,
        or ``params`` do not fit ``model`` (each mismatching parameter is named; for an
        ensemble, first a member count that differs from ``model.size``), or are not
        floating point, or hold NaN/Inf, or are rounded below a float64 model's precision.
      CheckpointWriteError: ``path`` is empty, its folder cannot be created (below a file,
        not writable), or the write failed (disk full, orbax error): nothing is left
        under ``path``, and a checkpoint that was there is unchanged.
      TypeError: ``metadata`` is not a dict with string keys (at every level) or not JSON-serialisable.
    """
    from physnetjax import __version__
    from physnetjax.ensemble.model import is_ensemble, member_count_mismatch

    check_metadata_keys({} if metadata is None else metadata)
    if not str(path).strip():
        raise CheckpointWriteError(f"the checkpoint path is empty ({str(path)!r}): name the directory to create")
    target = absolute_path(path)
    recover_interrupted_overwrite(target)
    if target.exists():
        if not overwrite:
            raise CheckpointExistsError(f"{target} exists; pass overwrite=True to replace it")
        _check_replaceable(target, frozenset(companions))
    count_problem = member_count_mismatch(model, params) if is_ensemble(model) else None
    if count_problem is not None:
        raise CheckpointError(f"params do not fit the model: {count_problem}")
    problems = param_mismatches(model, params)
    if problems:
        raise CheckpointError("params do not fit the model: " + "; ".join(problems))
    _check_float(params, "params to save")
    _check_finite(params, "params to save")
    _check_float64_kept(model, params)
    config = {
        "format_version": FORMAT_VERSION if is_ensemble(model) else SINGLE_MODEL_FORMAT_VERSION,
        "library_version": __version__,
        "model": model.config(),
        "units": dict(UNITS),
        "metadata": {} if metadata is None else metadata,
    }
    config_text = json.dumps(config, default=_json_value, indent=2, ensure_ascii=False)

    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.partial-", dir=target.parent))
    except OSError as error:
        blocker = next((folder for folder in target.parents if folder.exists()), target.parent)
        cause = (f"{blocker} is a file, not a folder" if not blocker.is_dir() else
                 f"{error.strerror or error}")
        raise CheckpointWriteError(f"cannot write the checkpoint {target}: its folder {target.parent} cannot be "
                                   f"created or written ({cause}); choose another path") from error
    try:
        _write_tree(staging / PARAMS_DIR, params)
        subdirs = [PARAMS_DIR]
        if train_state is not None:
            _write_tree(staging / TRAIN_STATE_DIR, train_state)
            subdirs.append(TRAIN_STATE_DIR)
        config = json.loads(config_text)
        config["files"] = _file_table(staging, subdirs)
        config[CONFIG_CHECKSUM_KEY] = config_checksum(config)
        with open(staging / CONFIG_FILE, "w", encoding="utf-8") as handle:
            json.dump(config, handle, indent=2, ensure_ascii=False)
            handle.flush()
            os.fsync(handle.fileno())
        _move_into_place(staging, target)
    except (OSError, ValueError) as error:
        shutil.rmtree(staging, ignore_errors=True)
        if isinstance(error, CheckpointError):
            raise
        kept = " (the checkpoint that was there is unchanged)" if target.exists() else ""
        raise CheckpointWriteError(f"writing the checkpoint {target} failed: {type(error).__name__}: "
                                   f"{_tensorstore_message(error)}; nothing was written{kept}") from error
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    logger.info("saved checkpoint %s", target)
    return target


REPLACED_MARK = ".replaced-"


def recover_interrupted_overwrite(target: Path) -> None:
    """Put back the old checkpoint of an overwrite that died between its two renames (see module docstring).

    When ``target`` is missing and a complete ``.NAME.replaced-XXXX`` sibling exists,
    the newest one is renamed to ``target`` and a warning says so.
    """
    target = absolute_path(target)
    if target.exists() or not target.parent.is_dir():
        return
    backups = sorted((p for p in target.parent.glob(f".{target.name}{REPLACED_MARK}*") if is_checkpoint(p)),
                     key=lambda p: p.stat().st_mtime)
    if backups:
        os.rename(backups[-1], target)
        logger.warning("%s: restored the previous checkpoint from %s (an overwrite was interrupted before the new "
                       "checkpoint was in place)", target, backups[-1].name)


def _move_into_place(staging: Path, target: Path) -> None:
    """Rename ``staging`` to ``target``; an existing ``target`` survives any failure."""
    if not target.exists():
        os.rename(staging, target)
        return
    backup = target.parent / f".{target.name}{REPLACED_MARK}{uuid.uuid4().hex[:8]}"
    os.rename(target, backup)
    try:
        os.rename(staging, target)
    except BaseException:
        os.rename(backup, target)
        raise
    try:
        shutil.rmtree(backup)
    except OSError as error:  # the new checkpoint is in place: a failed clean-up is no failed save
        logger.warning("%s: saved, but the previous checkpoint set aside as %s could not be removed (%s); delete it",
                       target, backup, error)


# -- load ------------------------------------------------------------------------------


def read_config(path) -> dict:
    """The validated ``config.json`` of a new-format checkpoint.

    Raises:
      CheckpointError: no ``config.json`` (not a checkpoint, or an interrupted
        write), unreadable JSON, missing keys, or a ``format_version`` newer than
        this library reads.
    """
    root = absolute_path(path)
    recover_interrupted_overwrite(root)
    file = root / CONFIG_FILE
    if not file.is_file():
        raise CheckpointError(f"{root} is not a physnetjax checkpoint: it has no {CONFIG_FILE}")
    try:
        config = json.loads(file.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as error:
        raise CheckpointError(f"checkpoint {root} is corrupted: {CONFIG_FILE} is not valid JSON ({error})") from None
    if not isinstance(config, dict) or type(config.get("format_version")) is not int:
        hint = _run_directory_hint(root)
        if hint:
            raise CheckpointError(f"{root} is not a checkpoint{hint}")
        raise CheckpointError(f"checkpoint {root} is corrupted: {CONFIG_FILE} has no integer format_version")
    version = config["format_version"]
    if version > FORMAT_VERSION:
        raise CheckpointError(
            f"checkpoint {root} has format_version {version} (written by physnetjax "
            f"{config.get('library_version', '?')}); this physnetjax reads format_version <= {FORMAT_VERSION}. "
            "Upgrade physnetjax to load it."
        )
    if version < 1:
        raise CheckpointError(f"checkpoint {root} has an invalid format_version {version}")
    missing = [key for key in ("model", "files") if not isinstance(config.get(key), dict)]
    if missing:
        raise CheckpointError(f"checkpoint {root} is corrupted: {CONFIG_FILE} lacks {', '.join(missing)}")
    bad = next((name for name, entry in config["files"].items()
                if not (isinstance(entry, dict) and type(entry.get("size")) is int
                        and isinstance(entry.get("sha256"), str))), None)
    if bad is not None:
        raise CheckpointError(f"checkpoint {root} is corrupted: the entry of file {bad} in {CONFIG_FILE} is "
                              f"{json.dumps(config['files'][bad])}, not its size and sha256")
    outside = next((name for name in config["files"] if not _inside_checkpoint(name)), None)
    if outside is not None:
        raise CheckpointError(f"checkpoint {root} is corrupted: {CONFIG_FILE} lists the file {outside!r}, which is "
                              f"not under {PARAMS_DIR}/ or {TRAIN_STATE_DIR}/ of the checkpoint")
    if not any(name.startswith(PARAMS_DIR + "/") for name in config["files"]):
        raise CheckpointError(f"checkpoint {root} is corrupted: the file table in {CONFIG_FILE} lists no file of "
                              f"{PARAMS_DIR}/, so the parameters cannot be verified")
    if not isinstance(config.get("metadata", {}), dict):
        raise CheckpointError(f"checkpoint {root} is corrupted: its metadata in {CONFIG_FILE} is not an object")
    units = config.get("units", UNITS)
    if units != UNITS:
        raise CheckpointError(f"checkpoint {root}: {CONFIG_FILE} gives the units "
                              f"{json.dumps(units, ensure_ascii=False)}; physnetjax models take and give "
                              f"{json.dumps(UNITS, ensure_ascii=False)}, so its predictions would be read in the "
                              "wrong units")
    return config


def _inside_checkpoint(name) -> bool:
    """Whether ``name`` (an entry of the file table) is a relative path under ``params/`` or ``train_state/``."""
    parts = name.split("/")
    return (parts[0] in (PARAMS_DIR, TRAIN_STATE_DIR) and len(parts) > 1 and not Path(name).is_absolute()
            and all(part not in ("", ".", "..") for part in parts))


def _restore(root: Path, subdir: str):
    try:
        return read_tree(root / subdir)
    except (OSError, ValueError, KeyError, RecursionError) as error:
        raise CheckpointError(f"checkpoint {root} is corrupted: cannot restore {subdir}/ ({error})") from error


def _loaded_array(value):
    """A stored parameter array as :func:`load_checkpoint` returns it: a JAX array, except float64 weights while
    JAX's 64-bit mode is off, which stay NumPy float64 (a JAX array would round them to float32 on the spot, and the
    float64 analyses, harmonic frequencies and the force checks, would run on rounded weights)."""
    value = np.asarray(value)
    if value.dtype == np.float64 and not jax.config.jax_enable_x64:
        return value
    return jnp.asarray(value)


def stored_precision(path) -> str:
    """``"float64"`` when the checkpoint at ``path`` holds float64 weights (a model trained with ``--float64``), else
    ``"float32"``: PhysNet's precision, that of legacy checkpoints, and the answer for a path that holds no readable
    checkpoint (loading it then says why). Reads ``config.json`` only."""
    try:
        model = read_config(path)["model"]
    except (CheckpointError, KeyError, TypeError, OSError):
        return "float32"
    member = model.get("member", model) if isinstance(model, dict) else None
    return "float64" if isinstance(member, dict) and member.get("param_dtype") == "float64" else "float32"


def load_checkpoint(path, *, weights: str = "ema", allow_pickle: bool = False, with_metadata: bool = False):
    """Load a checkpoint: ``(model, params)``, or ``(model, params, metadata)`` with ``with_metadata=True``.

    New-format checkpoints are read as written: their parameters (a trainer's EMA
    weights), or with ``weights="raw"`` the raw weights of the train state saved with a
    training checkpoint (the same step; refused for a checkpoint without one). Legacy checkpoints of the original
    physnetjax (a run directory ``name-uuid/`` or one ``epoch-N/`` directory) are
    migrated in memory with a warning; see :mod:`physnetjax.checkpoint.legacy`.

    Args:
      path: checkpoint directory (relative paths are resolved).
      weights: ``"ema"`` (default: the saved parameters, a trainer's EMA weights; for
        a legacy checkpoint the original's ``ema_params``) or ``"raw"`` (the raw weights:
        a training checkpoint's train state, a legacy checkpoint's ``params``).
      allow_pickle: allow reading a legacy *pickle* file. Pickle can execute code:
        pass True only for files you trust. Orbax checkpoints never need it.
      with_metadata: also return the metadata dict (training information, E0s,
        calibration; for a legacy checkpoint the migration report under ``"legacy"``).

    Returns:
      ``(model, params)`` (DESIGN.md's interface): a :class:`physnetjax.PhysNet` (or,
      for an ensemble checkpoint, a :class:`~physnetjax.ensemble.PhysNetEnsemble` with
      stacked params) and its variables ``{"params": ...}`` as jax arrays (float64 weights of a model trained
      with ``--float64`` as NumPy float64 arrays while JAX's 64-bit mode is off, unrounded; every evaluation casts
      them to its precision); with ``with_metadata=True`` also the metadata dict, as a third element.

    Raises:
      CheckpointError: not a checkpoint, corrupted or incomplete, newer format,
        a legacy model this library cannot represent, an ensemble whose stored
        parameters hold another number of members than its config, or ``weights="raw"``
        for a new-format checkpoint without a train state.
    """
    loaded = _load_checkpoint(path, weights, allow_pickle)
    return loaded if with_metadata else loaded[:2]


def _shipped_model_hint(path) -> str:
    """For a missing ``path`` that is the bare name of a shipped example model (``"co2"``), where that model is."""
    from physnetjax.pretrained import EXAMPLES

    name = str(path)
    if name and Path(name).name == name and (EXAMPLES / name / "model").is_dir():
        return (f"; the shipped example model {name!r} is physnetjax.pretrained.example_model_path({name!r}) "
                f"({EXAMPLES / name / 'model'})")
    return ""


def _load_checkpoint(path, weights: str, allow_pickle: bool) -> tuple:
    """(model, params, metadata) of :func:`load_checkpoint`."""
    from physnetjax.checkpoint import legacy
    from physnetjax.ensemble.model import PhysNetEnsemble, member_count_mismatch
    from physnetjax.model import PhysNet

    if weights not in WEIGHT_CHOICES:
        raise ValueError(f"weights must be one of {WEIGHT_CHOICES}, received {weights!r}")
    root = absolute_path(path)
    recover_interrupted_overwrite(root)
    if not root.exists():
        raise CheckpointNotFoundError(f"{root} does not exist{_shipped_model_hint(path)}", path)
    if not is_checkpoint(root):
        if run_hint := _run_directory_hint(root.parent):
            raise CheckpointError(f"{root} is inside a training run directory, not a checkpoint{run_hint}")
        if is_checkpoint(root.parent):
            kind = "file" if root.is_file() else f"{root.name}/ folder"
            raise CheckpointError(f"{root} is the {kind} inside the checkpoint {root.parent}: pass "
                                  f"the checkpoint directory {root.parent} itself")
        if legacy.is_legacy_checkpoint(root):  # its weights are checked finite by the migration
            return legacy.load_legacy(root, weights=weights, allow_pickle=allow_pickle)
        if (root / PARAMS_DIR).exists():
            raise CheckpointError(
                f"{root} is an incomplete physnetjax checkpoint: {PARAMS_DIR}/ exists but {CONFIG_FILE} "
                "is missing (the write was interrupted or the file deleted)"
            )
        raise CheckpointError(f"{root} is not a checkpoint: no {CONFIG_FILE} (physnetjax format) and no legacy orbax "
                              f"checkpoint (epoch-N directory with _METADATA){_checkpoints_inside_hint(root)}")
    config = read_config(root)
    _verify_config(root, config)
    _verify_files(root, _inference_files(root, config["files"]))
    ensemble = "ensemble_size" in config["model"]
    try:
        model = PhysNetEnsemble.from_config(config["model"]) if ensemble else PhysNet.from_config(config["model"])
        (model.member if ensemble else model).check_configuration()
    except (TypeError, ValueError, KeyError, NotImplementedError) as error:
        raise CheckpointError(f"checkpoint {root}: model config not understood ({error})") from None
    params = jax.tree_util.tree_map(_loaded_array, _restore(root, PARAMS_DIR) if weights == "ema" else
                                    _raw_params(root, config))
    count_problem = member_count_mismatch(model, params) if ensemble else None
    if count_problem is not None:
        raise CheckpointError(f"checkpoint {root}: {count_problem} (config.json says ensemble_size "
                              f"{model.size}); the parameters and config.json were not saved together")
    try:
        problems = param_mismatches(model, params)
    except (TypeError, ValueError) as error:  # e.g. a param_dtype that is no float type: init_params cannot run
        raise CheckpointError(f"checkpoint {root}: model config not understood (its parameters cannot be "
                              f"built: {error})") from None
    if problems:
        raise CheckpointError(f"checkpoint {root}: params do not fit the stored model: " + "; ".join(problems))
    _check_float(params, f"checkpoint {root}")
    _check_finite(params, f"checkpoint {root}")
    return model, params, config.get("metadata") or {}


def _raw_params(root: Path, config: dict):
    """``weights="raw"`` of a new-format checkpoint: the raw (non-EMA) parameters of the train state saved with it.

    A trainer checkpoint holds its EMA weights as the parameters and the optimiser's raw weights of the same step in
    its train state (``TrainState.params``); a checkpoint saved without a train state (a combined ensemble, one saved
    from Python) has no raw weights, and ``"raw"`` is refused rather than answered with the saved weights.
    """
    if not any(name.startswith(TRAIN_STATE_DIR + "/") for name in config["files"]):
        raise CheckpointError(f"checkpoint {root}: weights='raw' reads the raw weights of the train state saved with "
                              "a training checkpoint, and this one holds none (saved without train_state=...): its "
                              "one parameter set is read with weights='ema'")
    if not (root / TRAIN_STATE_DIR).exists():
        raise CheckpointError(f"checkpoint {root}: its {TRAIN_STATE_DIR}/ folder, which held the raw weights, was "
                              "removed after saving; read it with weights='ema'")
    state = _restore(root, TRAIN_STATE_DIR)  # its files were verified with the rest (_inference_files)
    if not isinstance(state, dict) or not isinstance(state.get("params"), dict):
        raise CheckpointError(f"checkpoint {root}: its train state holds no raw parameters ('params'), so "
                              "weights='raw' cannot be honoured; read it with weights='ema'")
    return state["params"]


def _inference_files(root: Path, table: dict) -> dict:
    """The entries of the file ``table`` that loading for inference verifies: all, or all but the train state's
    when its whole folder was removed (deleted to save space: the model loads, only a resume needs it)."""
    if (root / TRAIN_STATE_DIR).exists():
        return table
    kept = {name: entry for name, entry in table.items() if not name.startswith(TRAIN_STATE_DIR + "/")}
    if len(kept) < len(table):
        logger.info("checkpoint %s: no %s/ folder; loading the model without it", root, TRAIN_STATE_DIR)
    return kept


def load_train_state(path, target: Any = None):
    """The ``train_state`` pytree saved with a checkpoint, for exact resume.

    Args:
      path: a new-format checkpoint directory saved with ``train_state=...``.
      target: optional pytree of the same structure (e.g. a fresh optimizer state
        from ``tx.init``); the restored values are poured into it, rebuilding
        namedtuples, dataclasses and typed PRNG keys, and leaves that are
        ``jax.Array`` in ``target`` come back as ``jax.Array``.

    Returns:
      The train state: with ``target``, of its structure; without, nested dicts
      (lists and namedtuples stored as dicts) of NumPy arrays and Python scalars.

    Raises:
      CheckpointError: not a new-format checkpoint, no train state stored,
        corrupted files, or a ``target`` whose structure or shapes differ.
    """
    root = absolute_path(path)
    config = read_config(root)
    if not any(name.startswith(TRAIN_STATE_DIR + "/") for name in config["files"]):
        raise CheckpointError(f"checkpoint {root} holds no train state (saved without train_state=...)")
    if not (root / TRAIN_STATE_DIR).exists():
        raise CheckpointError(f"checkpoint {root} has no {TRAIN_STATE_DIR}/ folder (removed after saving): the model "
                              "loads for inference, but training cannot resume from it; start a new run with "
                              f"--init-from {root}")
    _verify_config(root, config)
    _verify_files(root, config["files"])
    raw = _restore(root, TRAIN_STATE_DIR)
    if target is None:
        return raw
    try:
        restored = flax.serialization.from_state_dict(target, raw)
    except (ValueError, KeyError, TypeError) as error:
        raise CheckpointError(f"train state in {root} does not match the structure of target: {error}") from None

    def like(reference, value):
        if isinstance(reference, jax.Array):
            if jax.dtypes.issubdtype(reference.dtype, jax.dtypes.prng_key):
                return jax.random.wrap_key_data(np.asarray(value), impl=jax.random.key_impl(reference))
            if np.shape(value) != reference.shape:
                raise CheckpointError(
                    f"train state in {root} does not match target: a leaf has shape {np.shape(value)}, "
                    f"target has {reference.shape}"
                )
            return jnp.asarray(value)
        return value

    return jax.tree_util.tree_map(like, target, restored)
