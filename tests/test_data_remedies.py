"""The fixes the data checks name come from the remedies in effect (physnetjax.data.remedies), not from fixed text.

A file among several read with the same options is told to convert itself, not to pass an option that would convert
the other files as well; the messages were once rewritten by matching their text, which a reworded check would have
slipped past silently. Each check now asks :func:`label_remedies` for its fix: with sentinel remedies in effect, every
faulty data set below must end its message with the sentinel of its kind of fault and name no option at all.
"""

import dataclasses
import warnings
from pathlib import Path

import numpy as np
import pytest

from physnetjax.data import bundled_dataset_path, load_dataset
from physnetjax.data.remedies import (
    ONE_FILE_OF_SEVERAL,
    READING_OPTIONS,
    LabelRemedies,
    label_remedies,
    remedies_in_effect,
)
from physnetjax.data.sanity import check_label_sanity
from physnetjax.units import DEBYE
from physnetjax.validation import PhysNetInputWarning

DATA = Path(__file__).parent / "data"
SENTINELS = LabelRemedies(**{field.name: f"<{field.name}>" for field in dataclasses.fields(LabelRemedies)})
KCAL_PER_MOL_IN_EV = 4.184e3 / 6.02214076e23 / 1.602176634e-19
KJ_PER_MOL_PER_EV = 1.602176634e-19 * 6.02214076e23 / 1e3
BOHR_IN_ANGSTROM = 0.529177210903


@pytest.fixture(scope="module")
def ethanol():
    """300 consecutive frames (10 fs apart) of the bundled set: enough nearby pairs for the energy–force fit."""
    return load_dataset(bundled_dataset_path()).subset(np.arange(300))


def _kcal(data):
    return dataclasses.replace(data, E=data.E / KCAL_PER_MOL_IN_EV, F=data.F / KCAL_PER_MOL_IN_EV)


def _kj_energies(data):
    return dataclasses.replace(data, E=data.E * KJ_PER_MOL_PER_EV)


def _forces_per_bohr(data):
    return dataclasses.replace(data, F=data.F / BOHR_IN_ANGSTROM)


def _gradients(data):
    return dataclasses.replace(data, F=-data.F)


def _dipoles_in_debye(data):
    return dataclasses.replace(data, D=data.D / DEBYE)


FAULTS = [  # (fault made from the ethanol frames, the start of the finding, the remedy it must end with)
    (_kcal, "RMS force component", "units"),
    (_kj_energies, "energies scatter", "energy_unit"),
    (_forces_per_bohr, "energies and forces do not match in scale", "units"),
    (_gradients, "the forces have the opposite sign", "force_sign"),
    (_dipoles_in_debye, "the dipoles are implausibly large", "dipole_unit"),
]


def _findings(check) -> list[str]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        check()
    return [str(w.message) for w in caught if issubclass(w.category, PhysNetInputWarning)]


@pytest.mark.parametrize("fault, finding, remedy", FAULTS, ids=[f"{f[0].__name__}-{f[2]}" for f in FAULTS])
def test_each_label_check_ends_with_the_remedy_in_effect(ethanol, fault, finding, remedy):
    data = fault(ethanol)
    with remedies_in_effect(SENTINELS):
        (message,) = [m for m in _findings(lambda: check_label_sanity(data, "faulty")) if finding in m]
    assert message.endswith(f"<{remedy}>"), message
    assert "--" not in message, message
    (default,) = [m for m in _findings(lambda: check_label_sanity(data, "faulty")) if finding in m]
    assert default.endswith(getattr(READING_OPTIONS, remedy)), default


def test_the_virial_sign_check_and_the_unread_gradients_key_end_with_the_remedy_in_effect(tmp_path):
    """Frames 30 fs apart (no nearby pairs: the sign comes from the virial) and a file whose gradients sit under
    a key the reader does not know."""
    data = load_dataset(DATA / "train_ethanol64.npz")
    path = tmp_path / "gradients.npz"
    np.savez(path, R=data.R, Z=data.Z, N=data.N, E=data.E, gradients=-data.F)
    with remedies_in_effect(SENTINELS):
        virial = _findings(lambda: check_label_sanity(_gradients(data), "faulty"))
        unread = _findings(lambda: load_dataset(path))
    assert [m for m in virial if "push the atoms apart" in m and m.endswith("<force_sign>")], virial
    (message,) = [m for m in unread if "label-like keys not read: 'gradients'" in m]
    assert "(<gradients_as_forces>)" in message and "--" not in message, message
    assert "to read the labels meant as these, <renamed_labels> (<gradients_as_forces>)" in message, message


def test_every_remedy_is_named_by_some_check():
    named = {remedy for _, _, remedy in FAULTS} | {"force_sign", "gradients_as_forces", "renamed_labels"}
    assert named == {field.name for field in dataclasses.fields(LabelRemedies)}


def test_the_remedies_are_restored_on_leaving_even_after_an_error():
    assert label_remedies() is READING_OPTIONS
    with pytest.raises(RuntimeError, match="inside"):
        with remedies_in_effect(ONE_FILE_OF_SEVERAL):
            assert label_remedies() is ONE_FILE_OF_SEVERAL
            raise RuntimeError("inside")
    assert label_remedies() is READING_OPTIONS

