"""The fixes that the data checks' messages end with, for the program that reads the data.

A label problem found in a file (energies in kcal/mol read as eV, gradients stored as forces, dipoles in Debye) has
a fix that depends on the program reading it: ``python -m physnetjax.train`` (and ``eval``) convert on reading
(``--energy-unit``, ``--force-unit``, ``--force-sign``, ``--dipole-unit``), ``python -m physnetjax.learn`` reads eV,
eV/Å, e·Å and F = −dE/dR only, so its user converts the file. The checks (:mod:`physnetjax.data.sanity`,
:mod:`physnetjax.data.dataset`, :mod:`physnetjax.data.dipole_charges`) take the fix from :func:`label_remedies`; a
program without the reading options runs them inside :func:`remedies_in_effect`.
"""
from __future__ import annotations

import contextlib
import contextvars
import dataclasses
from typing import Iterator


@dataclasses.dataclass(frozen=True)
class LabelRemedies:
    """What to do about each kind of label problem, as the end of a message.

    Attributes:
      units: energies and forces in other units than read (e.g. kcal/mol and kcal/mol/Å read as eV, eV/Å).
      energy_unit: energies in another unit than read.
      force_sign: forces stored as +dE/dR (gradients).
      gradients_as_forces: how gradients under another key become the forces key ``F`` (parenthetical).
      dipole_unit: dipoles in Debye read as e·Å.
      renamed_labels: labels (or positions, atomic numbers) stored under names the readers do not take.
    """

    units: str
    energy_unit: str
    force_sign: str
    gradients_as_forces: str
    dipole_unit: str
    renamed_labels: str


READING_OPTIONS = LabelRemedies(
    units="pass --energy-unit and --force-unit with the units the file holds",
    energy_unit="pass --energy-unit",
    force_sign="pass --force-sign -1",
    gradients_as_forces="gradients as F with --force-sign -1",
    dipole_unit="pass --dipole-unit debye",
    renamed_labels="map them with --keys PHYSNET_KEY=NAME (e.g. --keys E=energies F=forces), or rename them in the "
                   "file",
)
"""The fixes for ``physnetjax.train`` and ``physnetjax.eval``, which convert on reading (the default)."""

CONVERTED_FILE = LabelRemedies(
    units="the learning loop reads eV and eV/Å only (it has no unit options): convert the file",
    energy_unit="the learning loop reads eV only (it has no unit options): convert the file",
    force_sign="negate F in the file (the learning loop reads F = −dE/dR only)",
    gradients_as_forces="gradients negated, as F: the learning loop reads F = −dE/dR only",
    dipole_unit="convert them to e·Å (the learning loop reads e·Å only)",
    renamed_labels="rename them in the file (the learning loop reads the PhysNet names only)",
)
"""The fixes for ``physnetjax.learn``, which reads eV, eV/Å, e·Å and F = −dE/dR only."""

ONE_FILE_OF_SEVERAL = LabelRemedies(
    units="convert this file to the units of the other files (--energy-unit and --force-unit apply to every file "
          "given)",
    energy_unit="convert this file's energies to the unit of the other files (--energy-unit applies to every file "
                "given)",
    force_sign="negate F in this file (--force-sign applies to every file given)",
    gradients_as_forces="gradients negated, as F: --force-sign applies to every file given",
    dipole_unit="convert this file's dipoles to the unit of the other files (--dipole-unit applies to every file "
                "given)",
    renamed_labels="rename them in this file (--keys applies to every file given)",
)
"""The fixes for a problem of one file among several that ``physnetjax.train`` and ``eval`` read with the same
options: the file is converted, since the options would convert the other files as well."""


def one_file_of_several(remedies: LabelRemedies) -> LabelRemedies:
    """The fixes for a problem that only one of several files read together shows: :data:`ONE_FILE_OF_SEVERAL` in
    place of the reading options; fixes that convert the file already (:data:`CONVERTED_FILE`) stay."""
    return ONE_FILE_OF_SEVERAL if remedies == READING_OPTIONS else remedies


_IN_EFFECT: contextvars.ContextVar[LabelRemedies] = contextvars.ContextVar("label_remedies", default=READING_OPTIONS)


def label_remedies() -> LabelRemedies:
    """The fixes the data checks name now (:data:`READING_OPTIONS` outside :func:`remedies_in_effect`)."""
    return _IN_EFFECT.get()


@contextlib.contextmanager
def remedies_in_effect(remedies: LabelRemedies) -> Iterator[None]:
    """Make the data checks run inside name ``remedies`` (e.g. :data:`CONVERTED_FILE`), restored on leaving."""
    token = _IN_EFFECT.set(remedies)
    try:
        yield
    finally:
        _IN_EFFECT.reset(token)
