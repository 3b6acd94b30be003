"""Labellers: what turns a selected geometry into reference energy and forces.

A labeller is any callable ``label(atoms: ase.Atoms) -> dict`` returning ``E`` (eV),
``F`` ((n, 3) eV/Å, −dE/dR) and optionally ``D`` ((3,) e·Å about the coordinate
origin). The loop calls it once per selected frame; tests pass cheap analytic ones.
The default, :func:`xtb_labeller`, is GFN2-xTB through the same tblite calculator and
label extraction as :mod:`physnetjax.data.generate`.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from physnetjax.data.generate import labels_of, tblite_calculator, unpaired_electrons, xtb_failure
from physnetjax.errors import PhysNetInputError

Labeller = Callable[..., dict]


def xtb_labeller(method: str = "GFN2-xTB", charge: float = 0.0, uhf: int | None = None) -> Labeller:
    """A labeller computing ``method`` (tblite: GFN2-xTB, GFN1-xTB, IPEA1-xTB) at total ``charge`` (e).

    Each geometry is labelled with ``uhf`` unpaired electrons (spin multiplicity ``uhf`` + 1;
    None: a closed shell, or the unpaired electrons its initial magnetic moments give),
    checked by :func:`physnetjax.data.generate.unpaired_electrons`.

    Raises:
      ValueError: tblite is not installed (checked here, before any MD is run); when labelling, a
        geometry whose electrons at ``charge`` do not allow ``uhf`` (an odd number without ``uhf``:
        no closed shell, which tblite refused with an internal error; a ``uhf`` of the other parity
        or beyond the valence shells), or a failed xTB calculation such as an SCF that does not
        converge (:func:`physnetjax.data.generate.xtb_failure`; the loop skips that frame with a
        warning) or a geometry tblite refuses (an element beyond Z = 86, atoms on top of each other).
        The loop checks its starting frames the same way before any MD.
    """
    from ase.calculators.calculator import CalculationFailed, InputError

    tblite_calculator(method, charge)

    def label(atoms) -> dict:
        molecule = atoms.copy()
        unpaired = unpaired_electrons(molecule, charge, uhf, method)
        molecule.calc = tblite_calculator(method, charge, unpaired)
        try:
            labels = labels_of(molecule)
        except CalculationFailed as error:
            raise xtb_failure(error, f"{molecule.get_chemical_formula()} geometry", method, charge,
                              unpaired) from error
        except InputError as error:  # not a ValueError: the loop's checks of the start took it for a bug
            raise PhysNetInputError(f"{molecule.get_chemical_formula()} geometry: {method} (tblite) refused it "
                                    f"({' '.join(str(error).split())})") from error
        return {"E": labels["E"], "F": labels["F"], "D": labels["D"]}

    return label


def checked_labels(labels: dict, num_atoms: int, where: str) -> dict:
    """``labels`` as float64 arrays, after checking keys, shapes and finiteness (ValueError naming ``where``)."""
    if "E" not in labels or "F" not in labels:
        raise ValueError(f"{where}: a labeller must return 'E' and 'F', received keys {sorted(labels)}")
    out = {"E": np.asarray(labels["E"], np.float64).reshape(()),
           "F": np.asarray(labels["F"], np.float64)}
    if "D" in labels and labels["D"] is not None:
        out["D"] = np.asarray(labels["D"], np.float64)
    shapes = {"E": (), "F": (num_atoms, 3), "D": (3,)}
    for key, value in out.items():
        if value.shape != shapes[key]:
            raise ValueError(f"{where}: label {key!r} must have shape {shapes[key]}, received {value.shape}")
        if not np.all(np.isfinite(value)):
            raise ValueError(f"{where}: label {key!r} is not finite: {value}")
    return out
