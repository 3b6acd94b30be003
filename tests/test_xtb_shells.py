"""The valence-shell tables of physnetjax.data.xtb_shells are tblite's, and their spin-state bound is where tblite
stops labelling the state asked for."""

import ase.build
import numpy as np
import pytest
from ase.units import Bohr

from physnetjax.data.generate import unpaired_electrons
from physnetjax.data.xtb_shells import VALENCE_ELECTRONS, VALENCE_ORBITALS, valence_electrons, valence_orbitals


@pytest.fixture(scope="module")
def tblite():
    return pytest.importorskip("tblite.interface")


def singlepoint(tblite, method, numbers, positions, charge, uhf):
    calc = tblite.Calculator(method, np.asarray(numbers), np.asarray(positions) / Bohr, charge=charge, uhf=uhf)
    calc.set("verbosity", 0)
    return calc.singlepoint()


def atom_shells(tblite, method, z):
    """(valence electrons, orbitals) of element z from the first single-atom or ion SCF that converges."""
    for charge in (0, 1, 2, -1):
        for uhf in (0, 1, 2, 3, 4, 5):
            try:
                result = singlepoint(tblite, method, [z], np.zeros((1, 3)), charge, uhf)
            except tblite.TBLiteRuntimeError:  # parity refused, or no SCF convergence
                continue
            return round(float(np.sum(result.get("orbital-occupations")))) + charge, int(result.get("norbitals"))
    raise AssertionError(f"no converged {method} calculation for Z={z}")


def _allowed(atoms, charge, uhf, method):
    try:
        unpaired_electrons(atoms, charge, uhf, method)
    except ValueError:
        return False
    return True


@pytest.mark.parametrize("method", sorted(VALENCE_ORBITALS))
def test_tables_hold_what_tblite_assigns_to_each_element(tblite, method):
    found = [atom_shells(tblite, method, z) for z in range(1, 87)]
    assert [v for v, _ in found] == list(VALENCE_ELECTRONS[1:])
    assert [o for _, o in found] == list(VALENCE_ORBITALS[method][1:])


def test_sums_over_a_molecule_and_none_beyond_the_tables():
    assert valence_electrons([8, 1, 1]) == 8 and valence_orbitals([8, 1, 1], "GFN2-xTB") == 6
    assert valence_orbitals([8, 1, 1], "GFN1-xTB") == 8
    assert valence_electrons([92]) is None and valence_orbitals([92], "GFN2-xTB") is None
    assert valence_orbitals([8], "DFT") is None


@pytest.mark.parametrize("name,charge,method", [("H2O", 0, "GFN2-xTB"), ("H2O", 1, "GFN2-xTB"),
                                                ("HF", 0, "GFN2-xTB"), ("NH3", 0, "GFN2-xTB"),
                                                ("CH4", 0, "GFN2-xTB"), ("O2", 0, "GFN2-xTB"),
                                                ("SO2", 0, "GFN2-xTB"), ("HF", 0, "GFN1-xTB")])
def test_the_largest_uhf_allowed_is_the_last_that_tblite_labels_as_asked(tblite, name, charge, method):
    """At the bound tblite keeps every valence electron and the energy moves with uhf; two beyond it, it drops
    electrons (HF: uhf 4 is a 7-electron state) or returns the bound's energy (CH4: uhf 10 is uhf 8)."""
    atoms = ase.build.molecule(name)
    largest = max(u for u in range(0, 40) if _allowed(atoms, charge, u, method))
    with pytest.raises(ValueError, match=f"between 0 and {largest} "):
        unpaired_electrons(atoms, charge, largest + 2, method)
    valence = valence_electrons(atoms.numbers) - charge
    below, at, beyond = (singlepoint(tblite, method, atoms.numbers, atoms.positions, charge, u)
                         for u in (largest - 2, largest, largest + 2))
    assert np.sum(at.get("orbital-occupations")) == pytest.approx(valence)
    assert abs(at.get("energy") - below.get("energy")) > 1e-4
    lost = valence - np.sum(beyond.get("orbital-occupations"))
    assert lost > 0.5 or beyond.get("energy") == pytest.approx(at.get("energy"), abs=1e-8)
