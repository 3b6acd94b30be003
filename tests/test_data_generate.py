"""The spin state data.generate labels with: the electron count Σ Z − charge decides what uhf may be."""

import ase.build
import numpy as np
import pytest

from physnetjax.data.generate import generate, unpaired_electrons


def water(moments=None):
    atoms = ase.build.molecule("H2O")
    if moments is not None:
        atoms.set_initial_magnetic_moments(moments)
    return atoms


@pytest.mark.parametrize("charge,uhf,expected", [(0, None, 0), (0, 2, 2), (1, 1, 1), (-1, 3, 3), (10, 0, 0)])
def test_unpaired_electrons_accepts_the_parity_of_the_electron_count(charge, uhf, expected):
    assert unpaired_electrons(water(), charge, uhf) == expected


@pytest.mark.parametrize("charge,uhf,message", [
    # main: H2O+ (9 electrons) labelled with tblite's default, no spin state stated anywhere
    (1, None, "H2O at charge 1 has 9 electrons, an odd number: give uhf (--uhf), the number of unpaired electrons"),
    (1, 2, "uhf 2 does not match the parity of the electrons: H2O at charge 1 has 9 electrons, so uhf must be odd"),
    (0, 1, "uhf 1 does not match the parity of the electrons: H2O at charge 0 has 10 electrons, so uhf must be even"),
    (0, -2, "uhf -2: the number of unpaired electrons must be between 0 and 10"),
    (0, 12, "uhf 12: the number of unpaired electrons must be between 0 and 10"),
    (11, None, "charge 11 leaves H2O (10 protons) with -1 electrons"),
    (0.5, None, "charge must be a whole number of e (the molecule's total charge), received 0.5"),
])
def test_unpaired_electrons_refuses_a_spin_state_the_electrons_cannot_have(charge, uhf, message):
    with pytest.raises(ValueError) as error:
        unpaired_electrons(water(), charge, uhf)
    assert message in str(error.value)


def test_unpaired_electrons_reads_the_structure_magnetic_moments_when_uhf_is_not_given():
    assert unpaired_electrons(water([1.0, 0.0, 0.0]), 1) == 1
    assert unpaired_electrons(water([1.0, 0.0, 0.0]), 1, uhf=3) == 3
    with pytest.raises(ValueError, match=r"initial magnetic moments \(sum 2\) does not match the parity"):
        unpaired_electrons(water([1.0, 1.0, 0.0]), 1)
    with pytest.raises(ValueError, match="sum to 0.5, not a whole number of unpaired electrons"):
        unpaired_electrons(water([0.5, 0.0, 0.0]), 1)


def test_generate_labels_a_doublet_and_records_its_spin_state():
    pytest.importorskip("tblite")
    data = generate("H2O", frames=2, stride=1, equilibration_steps=0, charge=1.0, uhf=1)
    assert int(data["uhf"]) == 1 and np.all(data["Q"] == 1.0) and np.all(np.isfinite(data["E"]))
    assert "(charge 1 e, 1 unpaired electron)" in str(data["source"])
    with pytest.raises(ValueError, match="an odd number: give uhf"):
        generate("H2O", frames=2, stride=1, equilibration_steps=0, charge=1.0)
