"""Reading checkpoints of the original physnetjax trainer and migrating them.

The original ``train_model`` saved, per improving epoch, an orbax PyTree checkpoint
``<ckpt_dir>/<name>-<uuid>/epoch-N/`` holding the dict ``{model, model_attributes,
params, ema_params, opt_state, transform_state, epoch, best_loss, lr_eff,
objectives}`` (DESIGN.md §3). Quirks handled here:

* ``params``/``ema_params`` are flax variables ``{"params": {...}}`` whose names
  come from Flax auto-naming (``Embed_0``, ``MessagePass_k``, one ``Dense_k``
  counter shared by e3x and flax Dense, ``energy_bias``, ``charge_bias``,
  ``repulsion/*``). :class:`physnetjax.PhysNet` creates the same names, so every
  array is copied to the same path; nothing is renamed.
* ``energy_bias`` exists only in some versions (missing → ``use_energy_bias=False``);
  ``repulsion/*`` only when ZBL was trainable (missing with ``zbl=True`` → the
  universal ZBL values, which is what the non-trainable versions used).
* The deployable weights are ``ema_params`` (default) or ``params``; the ``model``
  entry is a TrainState that was never updated and holds the *initial random*
  weights, so it is never used.
* ``model_attributes`` values may be Python scalars, NumPy/JAX 0-d arrays, or (the
  earliest format) strings such as ``"False"``, parsed as text, never with ``bool()``.
* ``efa=True`` and ``n_res < 0`` (attention blocks) cannot be represented and raise
  :class:`CheckpointError` naming the attribute.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import re
from pathlib import Path
from typing import Any

import flax.serialization
import jax
import jax.numpy as jnp
import numpy as np

from physnetjax.checkpoint.errors import CheckpointError, CheckpointNotFoundError
from physnetjax.checkpoint.format import (absolute_path, expected_param_shapes, is_checkpoint, param_mismatches,
                                         read_tree)
from physnetjax.errors import warn_caller
from physnetjax.physics.zbl import ZBL_A_COEFFICIENT, ZBL_A_EXPONENT, ZBL_COEFFICIENTS, ZBL_EXPONENTS

logger = logging.getLogger(__name__)

EPOCH_DIR = re.compile(r"^epoch-(\d+)$")
PICKLE_SUFFIXES = (".pkl", ".pickle")
ORBAX_MARKER = "_METADATA"

BOOL_ATTRIBUTES = ("charges", "zbl", "efa")
INT_ATTRIBUTES = ("features", "max_degree", "num_iterations", "num_basis_functions", "max_atomic_number", "n_res")
FLOAT_ATTRIBUTES = ("cutoff", "total_charge")
REQUIRED_ATTRIBUTES = ("features", "max_degree", "num_iterations", "num_basis_functions", "cutoff", "n_res",
                       "charges", "zbl")
DEFAULT_ATTRIBUTES = {"max_atomic_number": 118, "total_charge": 0.0, "efa": False}
"""Defaults of the original ``EF`` for attributes that early checkpoints may lack."""
UNUSED_ATTRIBUTES = ("natoms", "debug")
"""Accepted and recorded, but without effect (sizes come from the inputs; logging replaces debug)."""

ZBL_UNIVERSAL = {
    "a_coefficient": np.float32(ZBL_A_COEFFICIENT),
    "a_exponent": np.float32(ZBL_A_EXPONENT),
    "phi_coefficients": np.asarray(ZBL_COEFFICIENTS, dtype=np.float32),
    "phi_exponents": np.asarray(ZBL_EXPONENTS, dtype=np.float32),
}


@dataclasses.dataclass(frozen=True)
class ParameterRecord:
    """Where one parameter of the migrated model came from.

    ``source`` is the legacy path (``ema_params/params/Dense_3/0+/kernel``) or None
    for a parameter the legacy checkpoint lacked; ``target`` is the path in the new
    variables or None when the array is not used; ``action`` says what happened.
    """

    source: str | None
    target: str | None
    shape: tuple
    dtype: str
    action: str


@dataclasses.dataclass(frozen=True)
class LegacyMigration:
    """Result of :func:`migrate_legacy`.

    Attributes:
      source: the ``epoch-N`` directory (or pickle file) read.
      weights: ``"ema_params"`` or ``"params"``, the legacy entry the weights came from.
      model: the :class:`physnetjax.PhysNet` built from the legacy attributes.
      params: its variables ``{"params": ...}`` (float32 jax arrays, as stored).
      attributes: ``{name: {"raw": repr of the stored value, "type": its type,
        "value": parsed value, "use": what the new model does with it}}``.
      parameters: one :class:`ParameterRecord` per array, legacy and new.
      notes: human-readable remarks (fallbacks, defaults, what changes by design).
      metadata: JSON-ready provenance (source, epoch, best_loss, objectives...).
    """

    source: Path
    weights: str
    model: Any
    params: dict
    attributes: dict
    parameters: tuple
    notes: tuple
    metadata: dict


# -- detection -------------------------------------------------------------------------


def _epoch_dirs(run_dir: Path) -> list[tuple[int, Path]]:
    found = []
    for child in run_dir.iterdir():
        match = EPOCH_DIR.match(child.name)
        if match and child.is_dir() and (child / ORBAX_MARKER).is_file():
            found.append((int(match.group(1)), child))
    return sorted(found)


def is_legacy_checkpoint(path) -> bool:
    """True for a legacy ``epoch-N/`` orbax dir, a run dir holding some, or a pickle file."""
    root = absolute_path(path)
    if root.is_file():
        return root.suffix in PICKLE_SUFFIXES
    if not root.is_dir():
        return False
    return (root / ORBAX_MARKER).is_file() or bool(_epoch_dirs(root))


def resolve_legacy_checkpoint(path) -> Path:
    """The checkpoint to read: ``path`` itself, or the highest ``epoch-N`` of a run dir.

    Raises:
      CheckpointError: ``path`` is neither.
    """
    root = absolute_path(path)
    if not root.exists():
        raise CheckpointNotFoundError(f"{root} does not exist", path)
    if root.is_file() and root.suffix not in PICKLE_SUFFIXES:
        raise CheckpointError(
            f"{root} is a file, not a checkpoint: expected a checkpoint directory (legacy epoch-N or run "
            f"directory) or a legacy pickle ({', '.join(PICKLE_SUFFIXES)})"
            + ("; an .npz holds arrays (geometries or reference outputs: --geometries/--reference)"
               if root.suffix == ".npz" else "")
        )
    if root.is_file() or (root / ORBAX_MARKER).is_file():
        return root
    if root.is_dir():
        epochs = _epoch_dirs(root)
        if epochs:
            epoch, chosen = epochs[-1]
            logger.info("run directory %s: using its latest checkpoint epoch-%d", root, epoch)
            return chosen
    if is_checkpoint(root):
        raise CheckpointError(f"{root} is already a checkpoint of this physnetjax (config.json): nothing to migrate; "
                              "load it with physnetjax.checkpoint.load_checkpoint")
    raise CheckpointError(
        f"{root} is not a legacy physnetjax checkpoint: expected an epoch-N directory with {ORBAX_MARKER} "
        "or a run directory containing such epoch-N directories"
    )


def read_legacy(path, *, allow_pickle: bool = False) -> tuple[Path, dict]:
    """``(source, raw dict)`` of a legacy checkpoint, arrays as NumPy.

    Raises:
      CheckpointError: unreadable or corrupted orbax data, a pickle file without
        ``allow_pickle=True``, a corrupted or truncated pickle, or content that is not a dict.
    """
    source = resolve_legacy_checkpoint(path)
    if source.is_file():
        if not allow_pickle:
            raise CheckpointError(
                f"{source} is a pickle file; unpickling can execute arbitrary code, so it is refused. "
                "Pass allow_pickle=True (CLI: --allow-pickle) only if you trust the file."
            )
        import pickle

        with open(source, "rb") as handle:
            try:
                raw = pickle.load(handle)
            except (pickle.UnpicklingError, EOFError, ValueError, TypeError, OverflowError, KeyError,
                    IndexError) as error:
                raise CheckpointError(f"legacy checkpoint {source} is a corrupted or truncated pickle "
                                      f"({type(error).__name__}: {error}): copy it again from where it was saved"
                                      ) from error
            except (ImportError, AttributeError) as error:
                raise CheckpointError(f"legacy pickle {source} refers to code that cannot be imported here "
                                      f"({type(error).__name__}: {error}): it is corrupted or was written with "
                                      "packages this environment lacks") from error
        raw = jax.tree_util.tree_map(lambda x: np.asarray(x) if isinstance(x, jax.Array) else x, raw)
    else:
        try:
            raw = read_tree(source)
        except Exception as error:
            cause = f"an entry lacks the key {error}" if isinstance(error, KeyError) else str(error)
            raise CheckpointError(f"legacy checkpoint {source} is corrupted or unreadable: {cause}") from error
    if not isinstance(raw, dict):
        raise CheckpointError(f"legacy checkpoint {source} does not hold a dict (found {type(raw).__name__})")
    return source, raw


# -- attributes ------------------------------------------------------------------------


def _scalar(name: str, value):
    """Unwrap 0-d arrays / one-element arrays to Python scalars; keep strings."""
    if isinstance(value, (np.ndarray, np.generic, jax.Array)):
        array = np.asarray(value)
        if array.size != 1:
            raise CheckpointError(f"legacy attribute {name} must be a scalar, found an array of shape {array.shape}")
        value = array.reshape(()).item()
    if isinstance(value, bytes):
        value = value.decode()
    return value


def parse_bool(name: str, value) -> bool:
    """A legacy boolean attribute: bool, 0/1, or the strings True/False (any case), 1/0, yes/no."""
    value = _scalar(name, value)
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, float)) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        text = value.strip().lower()
        if text in ("true", "1", "yes"):
            return True
        if text in ("false", "0", "no", "none", ""):
            return False
    raise CheckpointError(f"legacy attribute {name} must be a boolean, found {value!r}")


def parse_int(name: str, value) -> int:
    """A legacy integer attribute: int, integral float, or its text ("32", "32.0")."""
    value = _scalar(name, value)
    if isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            raise CheckpointError(f"legacy attribute {name} must be an integer, found {value!r}") from None
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float)) or float(value) != int(value):
        raise CheckpointError(f"legacy attribute {name} must be an integer, found {value!r}")
    return int(value)


def parse_float(name: str, value) -> float:
    """A legacy real attribute: int, float, or its text; finite (NaN and Inf are refused, naming ``name``)."""
    value = _scalar(name, value)
    if isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            raise CheckpointError(f"legacy attribute {name} must be a number, found {value!r}") from None
    elif isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float)):
        raise CheckpointError(f"legacy attribute {name} must be a number, found {value!r}")
    else:
        number = float(value)
    if not math.isfinite(number):
        raise CheckpointError(f"legacy attribute {name} must be a finite number, found {value!r}")
    return number


def parse_attributes(raw_attributes: dict) -> tuple[dict, dict]:
    """Legacy ``model_attributes`` → (PhysNet constructor kwargs, per-attribute record).

    Raises:
      CheckpointError: a required attribute is missing or unparsable, a real one
        (``cutoff``, ``total_charge``) is NaN or Inf, ``cutoff`` is not positive, ``efa``
        is true, or ``n_res`` is negative (attention blocks); the message names it.
    """
    if not isinstance(raw_attributes, dict):
        raise CheckpointError(f"legacy model_attributes must be a dict, found {type(raw_attributes).__name__}")
    missing = [name for name in REQUIRED_ATTRIBUTES if name not in raw_attributes]
    if missing:
        raise CheckpointError(f"legacy model_attributes lack {', '.join(missing)}")
    kwargs, record = {}, {}
    for name, raw in raw_attributes.items():
        entry = {"raw": repr(_scalar(name, raw)) if not isinstance(raw, (dict, list)) else repr(raw),
                 "type": type(raw).__name__}
        if name in BOOL_ATTRIBUTES:
            kwargs[name] = entry["value"] = parse_bool(name, raw)
            entry["use"] = "model." + name
        elif name in INT_ATTRIBUTES:
            kwargs[name] = entry["value"] = parse_int(name, raw)
            entry["use"] = "model." + name
        elif name in FLOAT_ATTRIBUTES:
            kwargs[name] = entry["value"] = parse_float(name, raw)
            entry["use"] = "model." + name
        elif name in UNUSED_ATTRIBUTES:
            entry["value"] = None
            entry["use"] = "accepted, no effect in physnetjax"
        else:
            entry["value"] = None
            entry["use"] = "unknown to physnetjax, ignored"
            logger.warning("legacy attribute %s=%r is unknown and ignored", name, raw)
        record[name] = entry
    for name, default in DEFAULT_ATTRIBUTES.items():
        if name not in kwargs:
            kwargs[name] = default
            record[name] = {"raw": None, "type": "absent", "value": default,
                            "use": f"model.{name} (absent: original default {default!r})"}
    if kwargs["cutoff"] <= 0:
        raise CheckpointError(f"legacy attribute cutoff must be larger than 0 (Å), found {kwargs['cutoff']!r}")
    if kwargs["efa"]:
        raise CheckpointError("legacy attribute efa=True (Euclidean fast attention) is not supported by physnetjax")
    if kwargs["n_res"] < 0:
        raise CheckpointError(
            f"legacy attribute n_res={kwargs['n_res']} selects the original's attention blocks, "
            "which physnetjax does not support"
        )
    return kwargs, record


# -- parameters ------------------------------------------------------------------------


def _flat(tree) -> dict:
    return {
        "/".join(str(k.key) for k in path): leaf
        for path, leaf in jax.tree_util.tree_flatten_with_path(flax.serialization.to_state_dict(tree))[0]
    }


def _select_weights(raw: dict, weights: str, notes: list, source: Path) -> tuple[str, dict]:
    """``(entry, tree)``: ``ema_params`` or ``params`` as ``weights`` asks (``"ema"`` falls back to ``params`` when
    there is no ``ema_params``); an entry that is present but no dict is refused, naming its type."""
    preferred = "ema_params" if weights == "ema" else "params"
    other = "params" if preferred == "ema_params" else "ema_params"
    if isinstance(raw.get(preferred), dict):
        return preferred, raw[preferred]
    for name in (preferred, other) if weights == "ema" else (preferred,):
        if raw.get(name) is not None and not isinstance(raw[name], dict):
            raise CheckpointError(f"legacy checkpoint {source}: {name} is not a parameter tree (found "
                                  f"{type(raw[name]).__name__}, expected a dict of arrays)")
    if weights == "ema" and isinstance(raw.get(other), dict):
        notes.append("the checkpoint has no ema_params; the raw training params were used")
        logger.warning("legacy checkpoint has no ema_params; using params")
        return other, raw[other]
    raise CheckpointError(
        f"legacy checkpoint has no {preferred} entry (keys: {sorted(raw)}); "
        "the stale 'model' TrainState holds initial random weights and is never used"
    )


def _as_variables(tree: dict) -> dict:
    """Legacy weights as ``{"params": {...}}`` (some writers dropped the collection level)."""
    if set(tree) == {"params"} and isinstance(tree["params"], dict):
        return tree
    return {"params": tree}


def migrate_legacy(path, *, weights: str = "ema", allow_pickle: bool = False) -> LegacyMigration:
    """Build a physnetjax model and variables from a legacy checkpoint, recording every step.

    Args:
      path: run directory ``name-uuid/`` (its latest ``epoch-N`` is used), an
        ``epoch-N`` directory, or (with ``allow_pickle``) a pickle of the same dict.
      weights: ``"ema"`` → ``ema_params`` (falls back to ``params`` with a note if
        absent), ``"raw"`` → ``params``.

    Returns:
      A :class:`LegacyMigration`.

    Raises:
      CheckpointError: unreadable checkpoint, unsupported attributes, or weights
        that do not fit the model the attributes describe (each mismatch named) or hold NaN/Inf.
    """
    if weights not in ("ema", "raw"):
        raise ValueError(f"weights must be 'ema' or 'raw', received {weights!r}")
    from physnetjax.model import PhysNet

    source, raw = read_legacy(path, allow_pickle=allow_pickle)
    if "model_attributes" not in raw:
        raise CheckpointError(f"legacy checkpoint {source} has no model_attributes (keys: {sorted(raw)})")
    try:
        kwargs, attributes = parse_attributes(raw["model_attributes"])
    except CheckpointError as error:
        raise CheckpointError(f"legacy checkpoint {source}: {error}") from None
    notes: list[str] = []
    entry, tree = _select_weights(raw, weights, notes, source)
    legacy_flat = _flat(_as_variables(tree))

    kwargs["use_energy_bias"] = "params/energy_bias" in legacy_flat
    if not kwargs["use_energy_bias"]:
        notes.append("no energy_bias in the checkpoint (older version): use_energy_bias=False")
    kwargs["zbl_cutoff"] = float(kwargs["cutoff"])  # the original's ZBL reached the cutoff; new models default shorter
    try:
        model = PhysNet(**kwargs)
        model.check_configuration()
    except (TypeError, ValueError, NotImplementedError) as error:
        raise CheckpointError(f"legacy checkpoint {source}: its model_attributes describe no model physnetjax can "
                              f"build ({error})") from None

    new_flat: dict[str, np.ndarray] = {}
    records = []
    expected = expected_param_shapes(model)
    for name, value in sorted(legacy_flat.items()):
        array = np.asarray(value)
        if name in expected and not jnp.issubdtype(array.dtype, jnp.floating):
            raise CheckpointError(f"legacy checkpoint {source}: {entry}/{name} holds {array.dtype} values of shape "
                                  f"{array.shape}, not floating-point weights: the checkpoint is damaged")
        if name in expected:
            new_flat[name] = array
            records.append(ParameterRecord(f"{entry}/{name}", name, array.shape, str(array.dtype), "copied unchanged"))
        else:
            records.append(ParameterRecord(
                f"{entry}/{name}", None, array.shape, str(array.dtype),
                "not used: the legacy model with these attributes did not use it either",
            ))
    for name in sorted(set(expected) - set(new_flat)):
        leaf = name.rsplit("/", 1)[-1]
        if model.zbl and name.startswith("params/repulsion/") and leaf in ZBL_UNIVERSAL:
            new_flat[name] = ZBL_UNIVERSAL[leaf]
            records.append(ParameterRecord(
                None, name, np.shape(ZBL_UNIVERSAL[leaf]), "float32",
                "absent (ZBL was not trainable in this version): universal ZBL value",
            ))
    if any(r.source is None for r in records):
        notes.append("zbl=True without repulsion parameters: initialised to the universal ZBL values")

    params = jax.tree_util.tree_map(jnp.asarray, _unflatten(new_flat))
    problems = param_mismatches(model, params)
    if problems:
        raise CheckpointError(
            f"legacy checkpoint {source}: the {entry} do not fit the model its attributes describe: "
            + "; ".join(problems)
        )
    broken = sorted(name for name, array in new_flat.items() if not np.isfinite(np.asarray(array, np.float64)).all())
    if broken:
        raise CheckpointError(
            f"legacy checkpoint {source}: the {entry} hold NaN or Inf in {', '.join(broken[:5])}"
            f"{f' (and {len(broken) - 5} more)' if len(broken) > 5 else ''}: every prediction would be NaN; the "
            "training had diverged when it was saved: migrate an earlier epoch-N directory"
            + ("" if entry == "params" else ", or --weights raw if the raw weights are finite"))
    notes.extend(_design_changes(model))
    metadata = _provenance(source, raw, entry)
    return LegacyMigration(source, entry, model, params, attributes, tuple(records), tuple(notes), metadata)


def _unflatten(flat: dict) -> dict:
    tree: dict = {}
    for name, value in flat.items():
        node = tree
        *parents, leaf = name.split("/")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return tree


def _design_changes(model) -> list[str]:
    """What the migrated model computes differently from the original, by design."""
    changes = ["padded atoms no longer take part in message passing (energies no longer depend on padding)"]
    if model.zbl:
        changes.append(
            "ZBL repulsion now uses the distance in Å, counts each pair once and is smoothly switched off "
            f"at {model.repulsion_cutoff} Å (the original fed 1/r and double-counted)"
        )
    if model.charges:
        changes.append(
            "charges are corrected to the total charge (q_i = q̃_i + (Q − Σq̃)/N); electrostatics is "
            "k_e Σ_{i<j} q_i q_j χ(r_ij) with every term multiplied by q_i q_j (the original added a "
            "charge-independent shift)"
        )
    return changes


def _json_scalar(value):
    value = np.asarray(value)
    return value.item() if value.size == 1 else value.tolist()


def _provenance(source: Path, raw: dict, entry: str) -> dict:
    from physnetjax import __version__

    legacy = {"source": str(source), "weights": entry, "migrated_by": f"physnetjax {__version__}"}
    for key in ("epoch", "best_loss", "lr_eff"):
        if key in raw and raw[key] is not None:
            legacy[key] = _json_scalar(raw[key])
    if isinstance(raw.get("objectives"), dict):
        legacy["objectives"] = {k: _json_scalar(v) for k, v in raw["objectives"].items() if v is not None}
    return {"legacy": legacy}


def load_legacy(path, *, weights: str = "ema", allow_pickle: bool = False):
    """``(model, params, metadata)`` of a legacy checkpoint, migrated in memory with a warning."""
    migration = migrate_legacy(path, weights=weights, allow_pickle=allow_pickle)
    message = (
        f"{migration.source} is a legacy physnetjax checkpoint; migrated in memory from its "
        f"{migration.weights}. The pair terms (ZBL, electrostatics) and the charge correction changed "
        "by design: run `python -m physnetjax.migrate OLD NEW` to see by how much and to save it."
    )
    warn_caller(message, UserWarning)
    return migration.model, migration.params, migration.metadata
