"""The fixes that the data checks' messages end with, for the program that reads the data.

A label problem found in a file (energies in kcal/mol read as eV, gradients stored as forces, dipoles in Debye) has
a fix that depends on how the file is read: a file read alone is read with other options (``--energy-unit``,
``--force-unit``, ``--force-sign``, ``--dipole-unit``, ``--keys``: :data:`READING_OPTIONS`), while one file among
several read with the same options is converted, since the options would convert the other files as well
(:data:`ONE_FILE_OF_SEVERAL`). The checks (:mod:`physnetjax.data.sanity`, :mod:`physnetjax.data.dataset`,
:mod:`physnetjax.data.dipole_charges`) take the fix from :func:`label_remedies`; the judgement of one file among
several runs inside :func:`remedies_in_effect`.
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
"""The fixes for the commands that read data files (``train``, ``eval``, ``learn``, ``ensemble calibrate``), which
convert on reading (the default)."""

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


_IN_EFFECT: contextvars.ContextVar[LabelRemedies] = contextvars.ContextVar("label_remedies", default=READING_OPTIONS)


def label_remedies() -> LabelRemedies:
    """The fixes the data checks name now (:data:`READING_OPTIONS` outside :func:`remedies_in_effect`)."""
    return _IN_EFFECT.get()


@contextlib.contextmanager
def remedies_in_effect(remedies: LabelRemedies) -> Iterator[None]:
    """Make the data checks run inside name ``remedies`` (e.g. :data:`ONE_FILE_OF_SEVERAL`), restored on leaving."""
    token = _IN_EFFECT.set(remedies)
    try:
        yield
    finally:
        _IN_EFFECT.reset(token)
