"""One-call inference on a single molecule or periodic cell, with eager input validation (:mod:`physnetjax.validation`)."""

from __future__ import annotations

from typing import Mapping, Optional

import jax
import numpy as np

from physnetjax import compilation
from physnetjax.neighbors.batch import apply_batch, model_pair_cutoff, model_triplet_cutoff
from physnetjax.neighbors.molecules import batch_molecules
from physnetjax.neighbors.periodic import batch_periodic
from physnetjax.neighbors.triplets import three_body_remedy
from physnetjax.training_record import NO_TRAINING_RECORD, TrainingRecord, training_record_of
from physnetjax.device_memory import gigabytes
from physnetjax.errors import OutOfMemoryError, PhysNetInputError, is_out_of_memory, warn_caller
from physnetjax.validation import PhysNetInputWarning, validate_structure


def predict(
    model,
    params,
    atomic_numbers,
    positions,
    total_charge: float = 0.0,
    dtype: Optional[np.dtype] = None,
    training_record: TrainingRecord = NO_TRAINING_RECORD,
) -> dict:
    """Energy, forces, charges and dipole of one isolated molecule, as NumPy.

    Builds the neighbor lists on the host (all pairs within the model's cutoff,
    plus the long-range pair list its pair terms need), runs the model once and
    returns physical quantities with padding removed. The molecule is moved to its
    centroid c before the cast to ``dtype`` (energy and forces do not depend on where it
    sits; float32 coordinates 1000 Å from the origin would cost ~1e-3 eV/Å), and the
    dipole is returned about the coordinate origin (the model's plus Q·c).

    Args:
      model: a :class:`physnetjax.PhysNet` or :class:`~physnetjax.ensemble.PhysNetEnsemble`.
      params: its variables (``{"params": ...}``; stacked for an ensemble).
      atomic_numbers: (n,) ints in [1, max_atomic_number].
      positions: (n, 3) Å, finite.
      total_charge: total charge Q in e (a model without charges ignores it; see
        :func:`physnetjax.validation.check_charge_model` for when it warns).
      dtype: float32 or float64, the dtype of the computation (default: float64 while JAX's x64 mode is on
        and ``positions`` are float64, else the model's precision, :func:`evaluation_dtype`; float64 needs x64).
      training_record: what the checkpoint records of its training data
        (``TrainingRecord.from_metadata(metadata)``, or the metadata dict itself; every entry point
        reads it with :func:`~physnetjax.training_record.training_record_of`); elements, a total charge,
        a composition or interatomic distances outside it warn
        (:meth:`~physnetjax.training_record.TrainingRecord.check_structure`).
        Default (or None): nothing known (only a non-zero Q given to a model without charges warns).

    Returns:
      dict with ``energy`` (float, eV), ``energies`` (n,) eV per atom (Σ_i = ``energy``: the
      atom's NN energy with its element reference, half of each pair term it is in and a
      third of each ATM triangle; :mod:`physnetjax.model`), ``forces`` (n, 3) eV/Å, ``charges`` (n,) e or
      None, ``dipole`` (3,) e·Å or None, ``electrostatics``, ``repulsion`` and ``dispersion`` (eV).
      For a :class:`~physnetjax.ensemble.PhysNetEnsemble` these are the ensemble means,
      and the dict also holds the calibrated member spreads (definitions in
      :mod:`physnetjax.ensemble.model`): ``energy_std`` (float, eV), ``energies_std`` (n,) eV,
      ``forces_std`` (n,) eV/Å per atom, ``charges_std`` (n,) e or None, ``dipole_std`` (float, e·Å) or None.
      A single model's dict has no ``*_std`` keys.

    Raises:
      PhysNetInputError: a bad structure (see :func:`physnetjax.validation.validate_structure`).
      ValueError: a dtype other than float32/float64, or float64 without x64 (see :func:`check_dtype`).
      FloatingPointError: the model returned NaN/Inf on a structure that passed validation.
    """
    z, r = validate_structure(atomic_numbers, positions, model.supported_max_atomic_number, total_charge=total_charge)
    training_record_of(training_record).check_structure(model, z, total_charge, positions=r)
    dtype = compute_dtype(dtype, model, r, "predict")
    centroid = np.asarray(r, np.float64).mean(axis=0)
    batch = batch_molecules(
        [z], [np.asarray(r, np.float64) - centroid], model.cutoff, total_charges=[total_charge],
        pair_cutoff=model_pair_cutoff(model),
        three_body_cutoff=model_triplet_cutoff(model), dtype=dtype,
    )
    network, element_energies = split_element_energies(model)
    check_params_fit(network, params)
    out = jax.device_get(apply_fitting(network, params, batch))  # one transfer; the rest is NumPy
    n = z.shape[0]
    require_finite(out, n)
    return {
        "energy": float(out["energy"][0]) + element_energy_sum(element_energies, z),
        "energies": atom_energies(out, element_energies, z),
        "forces": np.asarray(out["forces"][:n]),
        "charges": None if out["charges"] is None else np.asarray(out["charges"][:n]),
        "dipole": None if out["dipoles"] is None else np.asarray(out["dipoles"][0]) + total_charge * centroid,
        "electrostatics": float(out["electrostatics"][0]),
        "repulsion": float(out["repulsion"][0]),
        "dispersion": float(out["dispersion"][0]),
        **spread_of(out, n),
    }


def predict_periodic(model, params, atomic_numbers, positions, cell, total_charge: float = 0.0, dtype=None,
                     training_record: TrainingRecord = NO_TRAINING_RECORD) -> dict:
    """Energy, forces and stress of one periodic cell, as NumPy.

    Args:
      model: a :class:`physnetjax.PhysNet` or ensemble (its pair terms must have a finite reach).
      params: its variables.
      atomic_numbers: (n,) ints in [1, max_atomic_number].
      positions: (n, 3) Å.  cell: (3, 3) Å, vectors as rows.
      total_charge: e.  dtype: compute dtype, as in :func:`predict`.
      training_record: as in :func:`predict`.

    Returns:
      dict with ``energy`` (eV), ``energies`` (n,) eV per atom as in :func:`predict` (a pair of an
      atom with its own periodic image gives that atom the whole pair energy), ``forces`` (n, 3) eV/Å,
      ``stress`` (3, 3) eV/Å³
      (σ = (1/V) ∂E/∂ε: positive under tension, pressure = −tr σ / 3), ``charges`` (n,)
      or None, ``electrostatics``, ``repulsion`` and ``dispersion`` (eV); for an
      ensemble the means plus ``energy_std``, ``energies_std``, ``forces_std``, ``charges_std`` as in
      :func:`predict` and
      ``stress_std`` (eV/Å³, the members' RMS Frobenius distance from the mean stress).

    Raises:
      PhysNetInputError, FloatingPointError: as :func:`predict`; also a zero or degenerate cell.
    """
    z, r = validate_structure(atomic_numbers, positions, model.supported_max_atomic_number, total_charge=total_charge,
                              cell=cell, pbc=True)
    training_record_of(training_record).check_structure(model, z, total_charge, positions=r, cell=cell,
                                                        pbc=(True, True, True))
    dtype = compute_dtype(dtype, model, r, "predict_periodic")
    batch = batch_periodic(
        [z], [r], [cell], model.cutoff, total_charges=[total_charge], pair_cutoff=model_pair_cutoff(model),
        three_body_cutoff=model_triplet_cutoff(model), dtype=dtype,
    )
    network, element_energies = split_element_energies(model)
    check_params_fit(network, params)
    out = jax.device_get(apply_fitting(network, params, batch))  # one transfer; the rest is NumPy
    n = z.shape[0]
    require_finite(out, n)
    return {
        "energy": float(out["energy"][0]) + element_energy_sum(element_energies, z),
        "energies": atom_energies(out, element_energies, z),
        "forces": np.asarray(out["forces"][:n]),
        "stress": np.asarray(out["stress"][0]),
        "charges": None if out["charges"] is None else np.asarray(out["charges"][:n]),
        "electrostatics": float(out["electrostatics"][0]),
        "repulsion": float(out["repulsion"][0]),
        "dispersion": float(out["dispersion"][0]),
        **{key: value for key, value in spread_of(out, n).items() if key != "dipole_std"},
    }


def split_element_energies(model) -> tuple:
    """``(network, E0)``: ``model`` without its element energies, and E0 (eV per Z, float64) or None.

    The network's energy is E − Σ_i E0[Z_i]; adding :func:`element_energy_sum` on the host in
    float64 gives E without rounding Σ E0 to the compute dtype (a base pair's ~−25,000 eV
    sits on a float32 grid of 2 meV). Forces, charges and spreads do not depend on E0.
    """
    if model.element_energies is None:
        return model, None
    return model.clone(element_energies=None), np.asarray(model.element_energies, np.float64)


def element_energy_sum(element_energies, atomic_numbers) -> float:
    """Σ_i E0[Z_i] in eV (float64; 0 for ``element_energies`` None) over the atoms ``atomic_numbers`` (n,)."""
    if element_energies is None:
        return 0.0
    return float(np.sum(element_energies[np.asarray(atomic_numbers)]))


def atom_energies(out: dict, element_energies, atomic_numbers) -> np.ndarray:
    """The per-atom energies (n,) eV of molecule 0 in a model output, with E0[Z_i] added in float64.

    ``out["energies"]`` of the network (element energies split off, :func:`split_element_energies`)
    plus each atom's reference energy, so that their sum is the ``energy`` :func:`predict` returns.
    """
    energies = np.asarray(out["energies"][: len(atomic_numbers)], np.float64)
    if element_energies is None:
        return energies
    return energies + element_energies[np.asarray(atomic_numbers)]


def check_dtype(dtype) -> np.dtype:
    """``dtype`` as a NumPy float32/float64 dtype; float64 requires JAX's x64 mode (else ValueError)."""
    try:
        dtype = np.dtype(dtype)
    except TypeError:
        raise ValueError(f"dtype must be float32 or float64, received {dtype!r}") from None
    if dtype not in (np.float32, np.float64):
        raise ValueError(f"dtype must be float32 or float64, received {dtype}")
    if dtype == np.float64 and not jax.config.jax_enable_x64:
        raise ValueError(
            "dtype float64 needs 64-bit JAX: call jax.config.update('jax_enable_x64', True) first"
        )
    return dtype


def compute_dtype(dtype, model, positions: np.ndarray, where: str) -> np.dtype:
    """The dtype :func:`predict` and :func:`predict_periodic` compute in: float64 when no ``dtype`` is given while
    JAX's x64 mode is on and ``positions`` are float64, else :func:`evaluation_dtype`."""
    if dtype is None and positions.dtype == np.float64 and jax.config.jax_enable_x64:
        return np.dtype(np.float64)
    return evaluation_dtype(dtype, model, where)


def model_dtype(model) -> np.dtype:
    """The precision of ``model``'s weights (its ``param_dtype``): float64 for a model trained with ``python -m
    physnetjax.train --float64``, else float32 (PhysNet's default, the legacy checkpoints', the shipped models')."""
    return np.dtype(np.float64) if np.dtype(model.param_dtype) == np.float64 else np.dtype(np.float32)


def evaluation_dtype(dtype, model, where: str) -> np.dtype:
    """The dtype ``model`` is evaluated in: ``dtype`` when given (:func:`check_dtype`), else the model's own
    (:func:`model_dtype`), as the commands run a checkpoint in its precision (:mod:`physnetjax.cli_precision`) and
    MACE's calculator follows the model's dtype. While JAX's 64-bit mode is off, a float64 model given no ``dtype``
    runs in float32 (its weights rounded), with a :class:`~physnetjax.validation.PhysNetInputWarning` at the
    caller's line that names ``where`` (the function or class asked) and how to run it in float64; a library
    function does not switch the process's x64 mode."""
    if dtype is not None:
        return check_dtype(dtype)
    dtype = model_dtype(model)
    if dtype == np.float64 and not jax.config.jax_enable_x64:
        warn_caller(f"{where}: the model holds float64 weights (trained with --float64), but JAX's 64-bit mode is "
                    "off, so it runs in float32 with its weights rounded: call jax.config.update('jax_enable_x64', "
                    "True) first to run it in its precision, or give dtype='float32' to choose float32",
                    PhysNetInputWarning)
        return np.dtype(np.float32)
    return dtype


def spread_of(out: dict, num_atoms: int) -> dict:
    """The ensemble spreads of molecule 0 in a model output, as NumPy; {} for a single model's output.

    Keys: ``energy_std`` (eV), ``energies_std`` (n,) eV (when ``out`` holds per-atom energies),
    ``forces_std`` (n,) eV/Å, ``charges_std`` (n,) e or None,
    ``dipole_std`` (e·Å) or None, and for a periodic cell ``stress_std`` (eV/Å³; see :mod:`physnetjax.ensemble.model`).
    """
    if "energy_std" not in out:
        return {}
    optional = {"stress_std": float(out["stress_std"][0])} if out.get("stress_std") is not None else {}
    if out.get("energies_std") is not None:
        optional["energies_std"] = np.asarray(out["energies_std"][:num_atoms])
    return {**optional,
        "energy_std": float(out["energy_std"][0]),
        "forces_std": np.asarray(out["forces_std"][:num_atoms]),
        "charges_std": None if out["charges_std"] is None else np.asarray(out["charges_std"][:num_atoms]),
        "dipole_std": None if out["dipoles_std"] is None else float(out["dipoles_std"][0]),
    }


def require_finite(out: dict, num_atoms: int) -> None:
    """Raise FloatingPointError when the energy or a force of a validated structure is NaN/Inf.

    Validation excludes every input known to give NaN; a NaN that still appears is a
    model or parameter problem (e.g. NaN weights) and is reported, never returned.
    """
    energy = np.asarray(out["energy"][0])
    forces = np.asarray(out["forces"][:num_atoms])
    if not (np.isfinite(energy) and np.isfinite(forces).all()):
        bad = np.nonzero(~np.isfinite(forces).all(axis=1))[0].tolist()
        raise FloatingPointError(
            f"the model returned energy {float(energy)} and non-finite forces on atoms {bad[:10]} for an input "
            "that passed validation; check the parameters for NaN/Inf (e.g. a diverged training run)")


def init_params(model, seed: int | jax.Array = 0) -> dict:
    """Freshly initialised variables ``{"params": ...}`` for ``model`` (jitted init, cached per model).

    Parameter shapes do not depend on the structure, so a two-atom dummy (H–H at
    0.74 Å) is enough. ``seed`` is an int or a ``jax.random`` key. The init call skips the
    forces (``compute_forces=False``: the same parameters, about a third less to compile).
    """
    key = jax.random.PRNGKey(seed) if isinstance(seed, int) else seed
    batch = batch_molecules(
        [np.array([1, 1])], [np.array([[0.0, 0.0, 0.0], [0.74, 0.0, 0.0]])], model.cutoff,
        pair_cutoff=model_pair_cutoff(model), three_body_cutoff=model_triplet_cutoff(model),
        dtype=jax.dtypes.canonicalize_dtype(model.param_dtype),
    )
    if model not in _INIT_CACHE:
        _INIT_CACHE[model] = jax.jit(
            lambda k, b: model.init(k, b.atomic_numbers, b.positions, b.dst_idx, b.src_idx, b.atom_segments,
                                    b.num_molecules, b.edge_mask, b.atom_mask, total_charges=b.total_charges,
                                    pair_dst=b.pair_dst, pair_src=b.pair_src, pair_mask=b.pair_mask,
                                    triplets=b.triplets, triplet_mask=b.triplet_mask, compute_forces=False)
        )
    return _INIT_CACHE[model](key, batch)


_INIT_CACHE: dict = {}
_JIT_CACHE: dict = {}


def check_params_fit(model, params) -> None:
    """Refuse ``params`` of an ensemble ``model`` that hold another number of members (cheap: leading axes only).

    A 2-member stack given to a 3-member ensemble evaluated without complaint (the calculator's spreads then are
    those of other members than the model says).

    Raises:
      PhysNetInputError: naming both counts (:func:`~physnetjax.ensemble.model.member_count_mismatch`), or params
        that are not a mapping of the model's variables at all (None ended in a TypeError deep inside the batching).
    """
    from physnetjax.ensemble.model import is_ensemble, member_count_mismatch

    if not isinstance(params, Mapping):
        raise PhysNetInputError(f"params must be the model's variables, a dict such as load_checkpoint returns "
                                f"({{'params': ...}}), received {type(params).__name__}")
    problem = member_count_mismatch(model, params) if is_ensemble(model) else None
    if problem is not None:
        raise PhysNetInputError(f"params do not fit the model: {problem}")


def apply_fitting(model, params, batch, energies: bool = True) -> dict:
    """:func:`jitted_apply` of ``model`` on ``batch``, with parameters that do not fit the model named.

    An ensemble with one model's parameters (or the reverse) failed inside JAX or Flax ("scan got values with
    different leading axis sizes", ``ScopeParamShapeError``); the parameter paths and shapes that differ are
    looked up only then (:func:`~physnetjax.checkpoint.format.param_mismatches`, which traces the model's
    initialisation once per configuration). A member count that differs without failing is
    :func:`check_params_fit`'s, which the caller runs once (the calculator at construction, not every step).
    ``energies``: as in :func:`jitted_apply`.

    The call is waited for (its callers bring the results to the host at once), so that memory the device lacks is
    reported here.

    Raises:
      PhysNetInputError: ``params`` do not fit ``model`` (each difference named).
      OutOfMemoryError: the batch does not fit the device's memory (:func:`batch_out_of_memory`).
      Other errors as they come.
    """
    try:
        return jax.block_until_ready(jitted_apply(model, energies)(params, batch))
    except Exception as error:
        from physnetjax.checkpoint.format import param_mismatches

        if is_out_of_memory(error):
            raise batch_out_of_memory(model, batch, error) from error

        problems = param_mismatches(model, params)
        if problems:
            raise PhysNetInputError(f"params do not fit the model: {'; '.join(problems[:5])}"
                                    + (f" (and {len(problems) - 5} more)" if len(problems) > 5 else "")) from error
        raise


def batch_out_of_memory(model, batch, error: BaseException) -> OutOfMemoryError:
    """What fills the device's memory evaluating ``model`` on ``batch``, and what to change
    (:func:`out_of_memory_error` with the batch's sizes; ``error``: the OutOfMemoryError or XLA error behind it)."""
    return out_of_memory_error(model, "evaluating", batch.positions.shape[0], batch.dst_idx.shape[0],
                               None if batch.pair_dst is None else batch.pair_dst.shape[0],
                               None if batch.triplets is None else batch.triplets.shape[0], error)


def out_of_memory_error(model, doing: str, atom_slots: int, pairs: int, long_range_pairs: Optional[int],
                        triangles: Optional[int], error: BaseException,
                        remedy: str = "the structure is too large for this device; use one with more memory, or "
                                      "fewer atoms", atoms_are: str = "atom slots") -> OutOfMemoryError:
    """OutOfMemoryError ``out of memory on PLATFORM (KIND) DOING SIZES (NEEDED, FREE): REMEDY`` for ``error``.

    A D3 model's Axilrod–Teller–Muto term runs over every triangle of atoms within its cutoff: ~n k² for n atoms of
    k neighbours each, 1.9e8 for a 192-atom water box at 15 Å, where the pairs number ~n k (2.7e5). Summed in chunks
    (:data:`~physnetjax.physics.dispersion.ATM_CHUNK_TRIANGLES`), they still hold their index list (9 bytes each
    with its mask, on the host and again on the device: 4.3 GB at the peak of an energy+forces call on that box):
    when the triangles outnumber the pairs, the remedy is to leave that term out or shorten its cutoff
    (:func:`~physnetjax.neighbors.triplets.three_body_remedy`).
    ``error``: an OutOfMemoryError of :func:`~physnetjax.device_memory.check_fits` adds what the compiled program
    needs and what is free; ``remedy``: what to change when the triangles are not the cause; ``atoms_are``: what
    ``atom_slots`` counts ("atoms" for one system without padding).
    """
    sizes = [f"{atom_slots} {atoms_are}", f"{pairs} neighbor pairs (cutoff {model.cutoff:g} Å)"]
    if long_range_pairs is not None:
        sizes.append(f"{long_range_pairs} pairs of the long-range terms")
    if triangles is not None:
        sizes.append(f"{triangles} D3 three-body triangles")
    device = jax.devices()[0]
    text = f"out of memory on {device.platform} ({device.device_kind}) {doing} {', '.join(sizes)}"
    needed, free = getattr(error, "needed_bytes", None), getattr(error, "available_bytes", None)
    if needed is not None and free is not None:
        text += f" (the compiled program needs {gigabytes(needed)}, {gigabytes(free)} are free)"
    if triangles is not None and triangles >= max(pairs, long_range_pairs or 0):  # the triangles fill it
        remedy = three_body_remedy(getattr(model, "dispersion_cutoff", None))
    return OutOfMemoryError(f"{text}: {remedy}", needed, free)


def jitted_apply(model, energies: bool = True):
    """One jitted ``apply_batch`` per model configuration (models are hashable dataclasses).

    ``energies`` False leaves the per-atom ``energies`` (and an ensemble's ``energies_std``) out of
    the output, so the compiled program does not compute them (the calculator's call when ASE asks
    for no "energies"; with D3 dispersion their split is a second pass over the pairs).
    """
    key = (model, energies)
    if key not in _JIT_CACHE:
        def apply(params, batch):
            out = apply_batch(model, params, batch)
            return out if energies else {k: v for k, v in out.items() if k not in ("energies", "energies_std")}

        _JIT_CACHE[key] = compilation.jit(apply)
    return _JIT_CACHE[key]
