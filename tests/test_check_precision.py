"""physnetjax.check, group ``precision``: float32 (as MD and the calculator compute) against float64 on this device.

On an NVIDIA H200 XLA's default precision computed the model's float32 products in TF32 and put the forces 4.2 meV/Å
from float64 (physnetjax.matmul_precision); no check told the user. The CPU computes float32 products in full
float32, so a reduced precision is planted here: energy/force functions that round their float32 results (and only
those) as TF32 would, injected into ``check_model``.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import perturbed_params

from physnetjax import PhysNet, apply_batch, init_params
from physnetjax.check import CheckSettings, Structure, check_model
from physnetjax.check.precision import FLOAT64

SETTINGS = CheckSettings.quick()
ELEMENT_ENERGIES = tuple(-20000.0 - 13.0 * z for z in range(10))
"""eV: a DFT-sized reference (a base pair's Σ E0 is ~−25,000 eV); Σ E0 of methanol in float32 has a 4 meV grid."""


@pytest.fixture(scope="module")
def model():
    return PhysNet(features=8, max_degree=1, num_iterations=1, n_res=1, num_basis_functions=8, cutoff=4.0,
                   max_atomic_number=9, charges=True, zbl=True, zbl_cutoff=1.0, element_energies=ELEMENT_ENERGIES)


@pytest.fixture(scope="module")
def params(model):
    return perturbed_params(init_params(model, 0), scale=0.1, seed=1)


@pytest.fixture(scope="module")
def methanol(molecules):
    z, r = molecules["methanol"]
    return Structure(z, r + 40.0, 0.0, "methanol 40 Å from the origin")


def _precision_rows(model, params, methanol, energy_and_forces=None):
    report = check_model(model, params, [methanol], groups=["precision"], settings=SETTINGS,
                         energy_and_forces=energy_and_forces)
    return report.by_id("precision.float32_forces"), report.by_id("precision.float32_energy")


def _rounded_in_float32(model, bits: int, energy_shift: float = 0.0):
    """The function of ``model`` without its element energies (an injected function is evaluated as it is: Σ E0
    in float32 would be rounded to 8 meV) with the float32 forces rounded to ``bits`` mantissa bits and the float32
    energy shifted by ``energy_shift`` eV; float64 results untouched."""
    network = model.clone(element_energies=None)

    def energy_and_forces(params, batch):
        out = dict(apply_batch(network, params, batch))
        if batch.positions.dtype == jnp.float32:
            mantissa, exponent = jnp.frexp(out["forces"])
            out["forces"] = jnp.ldexp(jnp.round(mantissa * 2.0 ** bits) / 2.0 ** bits, exponent)
            out["energy"] = out["energy"] + energy_shift
        return out
    return energy_and_forces


def test_full_float32_passes_and_is_float32(model, params, methanol):
    """Full float32 passes by a margin of 10 (here ~2e-5 eV/Å at the O–H pair moved near the 1 Å ZBL switch, and
    ~1e-3 meV/atom) and is float32 (not zero: both sides float64 would agree exactly). The element energies
    (Σ E0 ≈ −120,000 eV) are added in float64, as predict adds them: rounded to float32 the energy would be off by
    up to 4 meV, 0.7 meV/atom, and warn."""
    forces, energy = _precision_rows(model, params, methanol)
    assert forces.status == energy.status == "pass", (forces.message, energy.message)
    assert 1e-9 < forces.value < forces.warn_above / 10, forces.value
    assert energy.value < energy.warn_above / 10, energy.value
    assert forces.details["geometries"] == 1 + SETTINGS.displacement_trials
    assert forces.details["backend"] == jax.default_backend() and forces.details["matmul_precision"] == "highest"
    assert "float32 forces within" in forces.message and "on cpu" in forces.message


def test_reduced_precision_forces_warn_and_fail_with_the_remedy(model, params, methanol):
    """Forces of up to 0.8 eV/Å rounded to 7 mantissa bits are off by up to 2⁻⁸ · 1 eV/Å = 3.9 meV/Å (warn), to 3
    bits by up to 62 meV/Å (fail)."""
    warned, _ = _precision_rows(model, params, methanol, _rounded_in_float32(model, bits=7))
    assert warned.status == "warn" and 1e-3 < warned.value < 1e-2, (warned.value, warned.message)
    assert warned.message.endswith(FLOAT64)
    failed, _ = _precision_rows(model, params, methanol, _rounded_in_float32(model, bits=3))
    assert failed.status == "fail" and failed.value > 1e-2, failed.value


def test_energy_off_in_float32_warns(model, params, methanol):
    """0.003 eV on 6 atoms: 0.5 meV/atom, above the 0.1 meV/atom warn bound."""
    _, energy = _precision_rows(model, params, methanol, _rounded_in_float32(model, bits=23, energy_shift=0.003))
    assert energy.status == "warn" and energy.value == pytest.approx(0.5, abs=0.01), energy.value


def test_a_reduced_precision_the_user_chose_is_named(model, params, methanol):
    with jax.default_matmul_precision("tensorfloat32"):
        forces, _ = _precision_rows(model, params, methanol, _rounded_in_float32(model, bits=7))
    assert forces.status == "warn"
    assert "products at 'tensorfloat32' (jax_default_matmul_precision)" in forces.message
    assert "jax_default_matmul_precision is 'tensorfloat32': unset it" in forces.message
    assert forces.details["matmul_precision"] == "tensorfloat32"


def test_the_float32_side_runs_with_x64_off(model, params, methanol):
    """As a float32 MD run without x64: a default-dtype constant in the function is float32, not float64 that
    would promote the rest (the x64 setting the check runs under is on)."""
    traced = []

    def recording(params, batch):
        traced.append((batch.positions.dtype, jnp.zeros(1, float).dtype))
        return apply_batch(model, params, batch)

    _precision_rows(model, params, methanol, recording)
    assert set(traced) == {(np.dtype(np.float32),) * 2, (np.dtype(np.float64),) * 2}, traced


def test_the_check_leaves_x64_as_it_found_it(model, params, methanol):
    before = jax.config.jax_enable_x64
    _precision_rows(model, params, methanol)
    assert jax.config.jax_enable_x64 == before
    assert np.asarray(jnp.zeros(1, float)).dtype == (np.float64 if before else np.float32)
