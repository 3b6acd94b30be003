"""What a checkpoint records of its training data, and the checks an evaluation makes against it.

The trainer writes these records into a checkpoint's metadata:

* ``trained_elements``: the atomic numbers Z of its training frames;
* ``trained_charges``: their distinct total charges Q (e);
* ``trained_charge_states``: for training data of several total charges, the charges of each composition (so that
  a composition seen only at other charges is named);
* ``element_energies_fit``: how it fitted the element reference energies E0, with the
  span (``basis``) of the training compositions, so that a composition whose Σ_Z n_Z E0[Z]
  the data never fixed can be named;
* ``trained_distances``: the interatomic distances of its training frames within the cutoff,
  the shortest per element pair and the longest nearest-neighbour distance per element
  (:class:`~physnetjax.distance_domain.DistanceDomain`), so that a structure with atoms pressed
  closer or pulled farther apart than training ever put them (by more than
  :data:`~physnetjax.distance_domain.DOMAIN_MARGIN`, 10 %) is named.

Every entry point that evaluates a model (``predict``, ``predict_periodic``, the ASE
calculator, MD, geometry optimisation, harmonic and MD spectra, ``check``, ``eval``,
ensemble calibration, the active-learning loop) reads them once into a
:class:`TrainingRecord` and checks its input against it in one call:
:meth:`TrainingRecord.check_structure` for one structure, :meth:`TrainingRecord.check_dataset`
for frames. Each check gives a :class:`~physnetjax.errors.PhysNetInputWarning` (the numbers
are an extrapolation there, not an error) and is skipped when its record is absent (a
checkpoint from before the trainer wrote it), except that a non-zero Q given to a model
without charges always warns (:func:`physnetjax.validation.check_charge_model`).

The distances are judged where the caller gives the positions: ``predict`` and
``predict_periodic`` on every call, MD on its start geometry, geometry optimisation and the
harmonic analysis on the input and on the optimised geometry, MD spectra on the input, the
calculator on the first structure of each composition and charge it sees (as for the other
checks), ``eval`` and ensemble calibration on every frame, counted.
"""

from __future__ import annotations

import dataclasses
from typing import Optional

import numpy as np

from physnetjax.distance_domain import TRAINED_DISTANCES_KEY, DistanceDomain
from physnetjax.validation import (
    ELEMENT_ENERGIES_FIT_KEY,
    TRAINED_CHARGE_STATES_KEY,
    TRAINED_CHARGES_KEY,
    TRAINED_ELEMENTS_KEY,
    check_charge_model,
    check_dataset_charge_states,
    check_dataset_charges,
    check_dataset_elements,
    check_reference_compositions,
    check_trained_elements,
)

ENERGY_OFFSET_CONSEQUENCE = "the energy returned includes it"
"""End of the undetermined-composition warning for entry points that return absolute energies."""


def recorded_value(metadata: Optional[dict], key: str):
    """``metadata[key]``, or that of its ``source_metadata`` when the top level has none (None if absent).

    A checkpoint re-saved from a training run with ``metadata={"source_metadata": meta}``
    (as the shipped models are) keeps the run's record one level down.
    """
    metadata = metadata or {}
    value = metadata.get(key)
    if value is None and isinstance(metadata.get("source_metadata"), dict):
        value = metadata["source_metadata"].get(key)
    return value


@dataclasses.dataclass(frozen=True)
class TrainingRecord:
    """The training data's elements, total charges, E0 fit and interatomic distances, as a checkpoint records them.

    Attributes:
      elements: sorted atomic numbers of the training frames, or None (unknown).
      charges: sorted distinct total charges (e) of the training frames, or None (unknown).
      element_energies_fit: the trainer's E0 fit record (method, rank, elements, basis, ...),
        or None (unknown, or trained without energies).
      charge_states: ((Hill formula, its trained total charges (e)), ...) sorted by formula, or None (unknown, or
        one charge only); pairs, not a dict, so that the record stays hashable.
      distances: the training frames' interatomic distances, or None (unknown).
    """

    elements: Optional[tuple[int, ...]] = None
    charges: Optional[tuple[float, ...]] = None
    element_energies_fit: Optional[dict] = None
    charge_states: Optional[tuple] = None
    distances: Optional[DistanceDomain] = None

    @classmethod
    def from_metadata(cls, metadata: Optional[dict]) -> "TrainingRecord":
        """The record of a checkpoint's metadata (fields None where the checkpoint has none)."""
        elements = recorded_value(metadata, TRAINED_ELEMENTS_KEY)
        charges = recorded_value(metadata, TRAINED_CHARGES_KEY)
        fit = recorded_value(metadata, ELEMENT_ENERGIES_FIT_KEY)
        states = recorded_value(metadata, TRAINED_CHARGE_STATES_KEY)
        distances = recorded_value(metadata, TRAINED_DISTANCES_KEY)
        return cls(elements=None if elements is None else tuple(sorted(int(z) for z in elements)),
                   charges=None if charges is None else tuple(sorted(float(q) for q in charges)),
                   element_energies_fit=fit if isinstance(fit, dict) else None,
                   charge_states=(tuple(sorted((str(name), tuple(float(q) for q in qs)) for name, qs in states.items()))
                                  if isinstance(states, dict) else None),
                   distances=DistanceDomain.from_metadata(distances))

    @property
    def _charge_states(self) -> Optional[dict]:
        return None if self.charge_states is None else dict(self.charge_states)

    def check_structure(self, model, atomic_numbers, total_charge: float = 0.0, *, positions=None, cell=None,
                        pbc=None, where: str = "", consequence: Optional[str] = ENERGY_OFFSET_CONSEQUENCE) -> bool:
        """Warn when one structure lies outside the training data; whether its interatomic distances did (False when
        they were not judged).

        Elements never trained on (:func:`~physnetjax.validation.check_trained_elements`), a total
        charge never trained on or one the model cannot read
        (:func:`~physnetjax.validation.check_charge_model`), a composition whose absolute energy
        carries an E0 offset the data never fixed
        (:func:`~physnetjax.validation.check_reference_compositions`; ``consequence`` ends that message;
        None skips it, for callers whose results do not depend on absolute energies), and, given the
        positions, interatomic distances outside those of the training frames (:meth:`check_distances`).

        Args:
          model: the model (its ``charges`` flag is read).
          atomic_numbers: (n,) Z of a validated structure.
          total_charge: Q in e.
          positions: (n, 3) Å of the validated structure (None: distances not judged).
          cell, pbc: its (3, 3) cell vectors (rows, Å) and (3,) periodic directions (None: isolated).
          where: prefix of every message.
        """
        z = np.asarray(atomic_numbers).reshape(-1)
        check_trained_elements(z, self.elements, where)
        check_charge_model(model, total_charge, self.charges, where)
        check_dataset_charge_states(z[None], [z.shape[0]], [total_charge], self._charge_states, where)
        if consequence is not None:
            check_reference_compositions(z[None], [z.shape[0]], self.element_energies_fit, where, consequence)
        if positions is not None and self.distances is not None:
            return self.distances.check_structure(z, positions, cell, pbc, where)
        return False

    def check_distances(self, atomic_numbers, positions, cell=None, pbc=None, *, where: str = "") -> None:
        """Warn when a structure's interatomic distances lie outside those of the training frames: a pair shorter,
        an atom's nearest neighbour farther, or an atom with more neighbours within the cutoff, than the training
        data's by more than :data:`~physnetjax.distance_domain.DOMAIN_MARGIN` (:meth:`DistanceDomain.check_structure
        <physnetjax.distance_domain.DistanceDomain.check_structure>`; skipped without a record). For a geometry
        a computation reached (an optimised one) whose input :meth:`check_structure` judged.

        Args: as :meth:`check_structure`.
        """
        if self.distances is not None:
            self.distances.check_structure(atomic_numbers, positions, cell, pbc, where)

    def check_dataset(self, atomic_numbers, num_atoms, total_charges, *, positions=None, cells=None,
                      where: str = "", consequence: Optional[str] = None, mask=None) -> list[str]:
        """Warn when frames lie outside the training data; returns the undetermined compositions' formulas.

        As :meth:`check_structure`, frame by frame, with counts of the frames concerned
        (:func:`~physnetjax.validation.check_dataset_elements`,
        :func:`~physnetjax.validation.check_dataset_charges`,
        :meth:`DistanceDomain.check_frames <physnetjax.distance_domain.DistanceDomain.check_frames>`). The
        composition check runs only when ``consequence`` is given (what the caller reports that holds the
        offset); ``mask`` (M,) bool restricts it to some frames (e.g. those with energy labels).

        Args:
          atomic_numbers: (M, N_max) Z padded per frame. num_atoms: (M,). total_charges: (M,) e.
          positions: (M, N_max, 3) Å (None: distances not judged). cells: (M, 3, 3) Å, rows, all zero for an
            isolated frame (:attr:`physnetjax.data.Dataset.cell`; None: all isolated).
        """
        check_dataset_elements(atomic_numbers, num_atoms, self.elements, where)
        if positions is not None and self.distances is not None:
            self.distances.check_frames(atomic_numbers, positions, num_atoms, cells, where)
        check_dataset_charges(total_charges, self.charges, where)
        check_dataset_charge_states(atomic_numbers, num_atoms, total_charges, self._charge_states, where)
        if consequence is None:
            return []
        return check_reference_compositions(atomic_numbers, num_atoms, self.element_energies_fit, where,
                                            consequence, mask)


NO_TRAINING_RECORD = TrainingRecord()
"""A record that knows nothing (a model without checkpoint metadata): only a non-zero total charge given to a
model without charges warns. The default of every entry point's ``training_record``."""


def training_record_of(value) -> TrainingRecord:
    """The :class:`TrainingRecord` an entry point's ``training_record`` argument stands for: a record as it is, a
    checkpoint's metadata dict (``load_checkpoint(..., with_metadata=True)``) read by
    :meth:`TrainingRecord.from_metadata`, None for :data:`NO_TRAINING_RECORD`.

    Raises:
      TypeError: anything else (a metadata dict or None ended in "'dict' object has no attribute 'check_structure'").
    """
    if value is None:
        return NO_TRAINING_RECORD
    if isinstance(value, TrainingRecord):
        return value
    if isinstance(value, dict):
        return TrainingRecord.from_metadata(value)
    raise TypeError(f"training_record must be a TrainingRecord, a checkpoint's metadata dict or None, received "
                    f"{type(value).__name__}")
