"""Combine separately trained checkpoints of one architecture into one ensemble checkpoint.

Every input may be a single-model checkpoint (one member) or an ensemble
checkpoint (all its members); legacy checkpoints are migrated on the fly as
:func:`physnetjax.load_checkpoint` does. The members must share the whole
architecture (``PhysNet.config()``, element energies included): their parameters
are stacked and evaluated by one vmapped program. The result is an uncalibrated
ensemble (``calibration_scale`` 1) unless a scale is given.

Metadata of the result: ``ensemble_sources`` (each input's path, member count and
metadata) and ``trained_elements`` (the elements every input was trained on, when
all of them record it), so predictions warn about elements some member never saw.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Sequence

from physnetjax.checkpoint import load_checkpoint, save_checkpoint
from physnetjax.ensemble.model import PhysNetEnsemble, is_ensemble, member_params, stack_members
from physnetjax.validation import TRAINED_ELEMENTS_KEY, trained_elements_of

logger = logging.getLogger(__name__)


def architecture_differences(reference: dict, other: dict) -> list[str]:
    """``"name (A vs B)"`` for every PhysNet config entry in which ``other`` differs from ``reference``."""
    differences = []
    for name in sorted(set(reference) | set(other)):
        a, b = reference.get(name), other.get(name)
        if a != b:
            differences.append(f"{name} (differ)" if isinstance(a, list) or isinstance(b, list) else f"{name} ({a} vs {b})")
    return differences


def combine_checkpoints(paths: Sequence, out, *, calibration_scale: float = 1.0, overwrite: bool = False) -> Path:
    """Write the ensemble of all members of ``paths`` to the checkpoint ``out``; returns its path.

    Args:
      paths: two or more checkpoint directories (single models or ensembles).
      out: directory of the new ensemble checkpoint.
      calibration_scale: s of :class:`PhysNetEnsemble` (1: uncalibrated spreads).
      overwrite: replace an existing checkpoint at ``out``.

    Raises:
      ValueError: fewer than 2 members in all, or an input whose architecture differs
        from the first one's (every differing setting is named).
      CheckpointError: an input that is not a readable checkpoint.
      FileExistsError: ``out`` exists and ``overwrite`` is False.
    """
    paths = [Path(p) for p in paths]
    if not paths:
        raise ValueError("combine needs checkpoints to combine")
    member, members, sources, elements = None, [], [], []
    for path in paths:
        model, params, metadata = load_checkpoint(path)
        own_member = model.member if is_ensemble(model) else model
        if member is None:
            member = own_member
        else:
            differences = architecture_differences(member.config(), own_member.config())
            if differences:
                raise ValueError(f"{path} cannot join an ensemble with {paths[0]}: its architecture differs in "
                                 + ", ".join(differences))
        count = model.size if is_ensemble(model) else 1
        members += [member_params(params, k) for k in range(count)] if is_ensemble(model) else [params]
        sources.append({"path": str(path.resolve()), "members": count, "metadata": metadata})
        elements.append(trained_elements_of(metadata))
    if len(members) < 2:
        raise ValueError(f"an ensemble needs at least 2 members; {paths[0]} holds only one")
    ensemble = PhysNetEnsemble(member=member, size=len(members), calibration_scale=calibration_scale)
    metadata = {"ensemble_sources": sources}
    if all(e is not None for e in elements):
        metadata[TRAINED_ELEMENTS_KEY] = sorted(set.intersection(*(set(e) for e in elements)))
    target = save_checkpoint(out, ensemble, stack_members(members), metadata, overwrite=overwrite)
    logger.info("ensemble of %d members from %d checkpoint(s) written to %s", len(members), len(paths), target)
    return target
