"""Combine separately trained checkpoints of one architecture into one ensemble checkpoint.

Every input may be a single-model checkpoint (one member) or an ensemble
checkpoint (all its members); legacy checkpoints are migrated on the fly as
:func:`physnetjax.load_checkpoint` does. The members must share the architecture
(every ``PhysNet.config()`` entry but ``element_energies``): their parameters are
stacked and evaluated by one compiled program. The result is an uncalibrated
ensemble (``calibration_scale`` 1) unless a scale is given; an input ensemble's own
calibration does not carry over (it describes the spread of its members only), which
a warning says.

Element energies. Separately trained models usually carry slightly different fixed
element energies E0 (each trainer fits them on its own training split). The
ensemble keeps the first input's E0_ref, and each other member's difference goes
into its trainable per-element bias, which enters the energy the same way::

    E_i = E_i^NN + b[Z_i] + E0[Z_i] = E_i^NN + (b[Z_i] + E0[Z_i] − E0_ref[Z_i]) + E0_ref[Z_i]

so every member's energies and forces are unchanged (up to the rounding of the
bias to the parameter dtype). A member without ``energy_bias``
(``use_energy_bias=False``) and different E0 cannot be folded and is refused.

Metadata of the result: ``ensemble_sources`` (each input's path, member count and
metadata), ``trained_elements``, ``trained_charges`` and ``trained_charge_states`` (the
elements, total charges and charges per composition every input was trained on, when all
of them record it), so predictions warn about
elements and charge states some member never saw; ``trained_distances``, when all of them record
it, their intersection (:meth:`~physnetjax.distance_domain.DistanceDomain.intersection`: per element
pair the largest of the shortest distances, per element the smallest of the longest nearest-neighbour
distances and of the most neighbours, pairs and elements some member lacks left out), so that
predictions warn where some member extrapolates; and ``element_energies_fit`` when every
input's training fixed the element energies of the same compositions, so that absolute
energies of other compositions warn as for a single model (None when every input was
trained without energies).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from physnetjax.checkpoint import load_checkpoint, save_checkpoint
from physnetjax.distance_domain import TRAINED_DISTANCES_KEY, DistanceDomain
from physnetjax.ensemble.model import PhysNetEnsemble, is_ensemble, member_params, stack_members
from physnetjax.errors import OutputPathError, PhysNetInputWarning, warn_caller
from physnetjax.training_record import TrainingRecord
from physnetjax.validation import (ELEMENT_ENERGIES_FIT_KEY, TRAINED_CHARGE_STATES_KEY, TRAINED_CHARGES_KEY,
                                   TRAINED_ELEMENTS_KEY, distinct_charges, untrained_charges)

logger = logging.getLogger(__name__)


FOLDED = ("element_energies",)
"""Config entries that may differ between members: folded into the parameters (module docstring)."""


def architecture_differences(reference: dict, other: dict) -> list[str]:
    """``"name (A vs B)"`` for every PhysNet config entry but :data:`FOLDED` in which ``other`` differs."""
    return [f"{name} ({reference.get(name)} vs {other.get(name)})" for name in sorted(set(reference) | set(other))
            if name not in FOLDED and reference.get(name) != other.get(name)]


def fold_element_energies(model, params, reference_energies, where) -> dict:
    """``params`` of ``model`` rewritten for the element energies ``reference_energies`` (module docstring).

    Raises:
      ValueError: the energies differ and ``model`` has no ``energy_bias`` to take the difference.
    """
    size = model.max_atomic_number + 1
    own = np.zeros(size) if model.element_energies is None else np.asarray(model.element_energies, np.float64)
    reference = np.zeros(size) if reference_energies is None else np.asarray(reference_energies, np.float64)
    shift = own - reference
    if not shift.any():
        return params
    if not model.use_energy_bias:
        changed = ", ".join(str(z) for z in np.flatnonzero(shift))
        raise ValueError(f"{where} has other element energies (Z = {changed}) than the first checkpoint and no "
                         "energy_bias to absorb the difference (use_energy_bias=False); it cannot join the ensemble")
    bias = np.asarray(params["params"]["energy_bias"])
    logger.info("%s: element energies differ from the first checkpoint by up to %.3g eV; folded into energy_bias",
                where, float(np.abs(shift).max()))
    folded_bias = jnp.asarray((bias.astype(np.float64) + shift).astype(bias.dtype))
    return {**params, "params": {**params["params"], "energy_bias": folded_bias}}


def _refuse_identical_members(members: list, origins: list[str]) -> None:
    """ValueError when two members have identical parameters (the same checkpoint given twice, or a copy).

    Identical members add nothing but a spread of exactly 0 between them, which
    understates every uncertainty (and makes a calibration impossible when all agree).
    """
    flat = [np.concatenate([np.ravel(np.asarray(leaf, np.float64)) for leaf in jax.tree_util.tree_leaves(p)])
            for p in members]
    for j in range(len(flat)):
        for k in range(j):
            if np.array_equal(flat[j], flat[k]):
                raise ValueError(f"{origins[j]} has the same parameters as {origins[k]} (the same checkpoint "
                                 "twice?); identical members would report no spread between them")


def _refuse_energy_free_beside_energy_members(paths: list, metadata: list[dict]) -> None:
    """ValueError when some inputs were trained without energy labels and others with them.

    The trainer records ``element_energies_fit`` None when its training frames held no
    energies: such a model's energies carry an arbitrary offset (forces alone fix them only up
    to a constant), so beside members trained on energies the mean energy is off by half of it
    and ``energy_std`` is that offset, not an uncertainty.
    """
    without = [str(p) for p, meta in zip(paths, metadata) if meta.get("element_energies_fit", "unknown") is None]
    if without and len(without) < len(paths):
        with_energies = [str(p) for p in paths if str(p) not in without]
        raise ValueError(f"{', '.join(without)} was trained without energy labels (its energies have an arbitrary "
                         f"offset) but {', '.join(with_energies)} on energies: the ensemble's energy and energy_std "
                         "would be meaningless; combine only models trained on energies, or only force-only models")


def _common_reference_fit(fits: list) -> Optional[dict]:
    """The first input's ``element_energies_fit`` when every input's determines the same compositions, else None.

    Each record's ``basis`` spans the compositions whose sum of element energies its training fixed
    (:func:`physnetjax.validation.undetermined_compositions`); when all spans are equal (members trained
    on the same compositions) the ensemble's energies are determined there and nowhere else. Unequal
    spans, or a record without ``basis``, give None (no composition check for the ensemble).
    """
    if not fits or any(fit is None or fit.get("basis") is None for fit in fits):
        return None
    elements = sorted({int(z) for fit in fits for z in fit.get("elements", [])})

    def span(fit):
        rows = np.zeros((max(len(fit["basis"]), 1), len(elements)))
        for k, row in enumerate(fit["basis"]):
            for z, count in zip(fit.get("elements", []), row):
                rows[k, elements.index(int(z))] = count
        return rows

    first = span(fits[0])
    rank = np.linalg.matrix_rank(first)
    same = all(np.linalg.matrix_rank(other) == rank == np.linalg.matrix_rank(np.vstack([first, other]))
               for other in map(span, fits[1:]))
    return fits[0] if same else None


def refuse_output_among_inputs(paths: Sequence, out, what: str = "out") -> None:
    """Refuse an output directory ``out`` that is one of the input checkpoints ``paths``, holds one or lies inside
    one (compared after links and ``~`` are resolved).

    Writing the ensemble there would replace (or delete, or change) an input: a single model's checkpoint loses its
    weights and its training state (optimizer, EMA), from which its run can no longer be resumed.

    Raises:
      OutputPathError: naming ``what`` (the option, for the command line) and the input concerned.
    """
    target = Path(out).expanduser().resolve()
    for path in paths:
        source = Path(path).expanduser().resolve()
        if target == source:
            relation = "is the input checkpoint"
        elif target in source.parents:
            relation = "holds the input checkpoint"
        elif source in target.parents:
            relation = "lies inside the input checkpoint"
        else:
            continue
        raise OutputPathError(f"refusing to write {what} {out}: it {relation} {path} ({source}); the ensemble "
                                "written there would replace or alter that input (its weights and training state); "
                                f"choose another {what}")


def combine_checkpoints(paths: Sequence, out, *, calibration_scale: float = 1.0, overwrite: bool = False) -> Path:
    """Write the ensemble of all members of ``paths`` to the checkpoint ``out``; returns its path.

    Args:
      paths: two or more checkpoint directories (single models or ensembles).
      out: directory of the new ensemble checkpoint.
      calibration_scale: s of :class:`PhysNetEnsemble` (1: uncalibrated spreads).
      overwrite: replace an existing checkpoint at ``out``.

    Raises:
      ValueError: fewer than 2 members in all, an input whose architecture differs
        from the first one's (every differing setting is named), two members with
        identical parameters, or inputs trained without energy labels beside inputs trained on them.
      OutputPathError: ``out`` is one of the inputs, holds one or lies inside one
        (:func:`refuse_output_among_inputs`; checked before any checkpoint is read).
      CheckpointError: an input that is not a readable checkpoint.
      FileExistsError: ``out`` exists and ``overwrite`` is False.
    """
    paths = [Path(p) for p in paths]
    if not paths:
        raise ValueError("combine needs checkpoints to combine")
    refuse_output_among_inputs(paths, out)
    member, members, origins, sources, records = None, [], [], [], []
    for path in paths:
        model, params, metadata = load_checkpoint(path, with_metadata=True)
        own_member = model.member if is_ensemble(model) else model
        if member is None:
            member = own_member
        else:
            differences = architecture_differences(member.config(), own_member.config())
            if differences:
                raise ValueError(f"{path} cannot join an ensemble with {paths[0]}: its architecture differs in "
                                 + ", ".join(differences))
        count = model.size if is_ensemble(model) else 1
        own = [member_params(params, k) for k in range(count)] if is_ensemble(model) else [params]
        members += [fold_element_energies(own_member, p, member.element_energies, path) for p in own]
        origins += [f"{path}" if count == 1 else f"{path} member {k}" for k in range(count)]
        sources.append({"path": str(path.resolve()), "members": count, "metadata": metadata})
        if is_ensemble(model) and model.calibration_scale != calibration_scale:
            warn_caller(f"{path} was calibrated (scale {model.calibration_scale:.4g}); the combined ensemble has "
                        f"other members, whose spread that scale does not describe: it is written with scale "
                        f"{calibration_scale:g}. Calibrate it on held-out frames: python -m physnetjax.ensemble "
                        "calibrate", PhysNetInputWarning)
        records.append(TrainingRecord.from_metadata(metadata))
    if len(members) < 2:
        raise ValueError(f"an ensemble needs at least 2 members; {paths[0]} holds only one")
    _refuse_energy_free_beside_energy_members(paths, [source["metadata"] for source in sources])
    _refuse_identical_members(members, origins)
    ensemble = PhysNetEnsemble(member=member, size=len(members), calibration_scale=calibration_scale)
    metadata = {"ensemble_sources": sources}
    if all(r.elements is not None for r in records):
        metadata[TRAINED_ELEMENTS_KEY] = sorted(set.intersection(*(set(r.elements) for r in records)))
    if all(r.charges is not None for r in records):
        metadata[TRAINED_CHARGES_KEY] = [q for q in distinct_charges(records[0].charges)
                                         if not any(untrained_charges([q], r.charges) for r in records[1:])]
    if all(r.charge_states is not None for r in records):  # a composition's charges that every member trained on
        states = [dict(r.charge_states) for r in records]
        common = {name: [q for q in charges if not any(untrained_charges([q], other.get(name, ()))
                                                       for other in states[1:])]
                  for name, charges in states[0].items()}
        metadata[TRAINED_CHARGE_STATES_KEY] = {name: charges for name, charges in common.items() if charges}
    if all(r.distances is not None for r in records):
        metadata[TRAINED_DISTANCES_KEY] = DistanceDomain.intersection([r.distances for r in records]).to_metadata()
    if all(source["metadata"].get(ELEMENT_ENERGIES_FIT_KEY, "unknown") is None for source in sources):
        metadata[ELEMENT_ENERGIES_FIT_KEY] = None  # all trained without energies, as eval then says
    elif (common := _common_reference_fit([r.element_energies_fit for r in records])) is not None:
        metadata[ELEMENT_ENERGIES_FIT_KEY] = common
    target = save_checkpoint(out, ensemble, stack_members(members), metadata, overwrite=overwrite)
    logger.info("ensemble of %d members from %d checkpoint(s) written to %s", len(members), len(paths), target)
    return target


if __name__ == "__main__":  # a user's guess at the tool: name the command (physnetjax.__main__.SUBCOMMAND_MODULES)
    import sys

    from physnetjax.__main__ import refuse_library_module

    sys.exit(refuse_library_module("ensemble.combine"))
