"""physnetjax.check on crystals: a correct model passes every row of a periodic cell; a stress of the wrong sign or
volume, a determinant without its sign or a lost image fails the row meant for it.

The crystal is fcc copper (ASE's cubic cell, 4 atoms), sheared and rattled so that no force or stress component
vanishes by symmetry; the model is a tiny random float64 PhysNet (cutoff 4 Å, several times the cell's images).
Broken models are energy/force functions wrapping the same model (as in test_check.py).
"""

import dataclasses
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from ase.build import bulk
from ase.calculators.emt import EMT
from conftest import perturbed_params

from physnetjax import PhysNet, apply_batch, init_params, save_checkpoint
from physnetjax.check import CheckSettings, Evaluator, Structure, Thresholds, check_model
from physnetjax.check.__main__ import main
from physnetjax.check.cell_invariance import SUPERCELL, supercell
from physnetjax.check.evaluate import cast_to_float64
from physnetjax.neighbors.periodic import periodic_pairs
from physnetjax.check.stress import check_stress, numerical_stress, strain_steps
from physnetjax.units import GPA

SETTINGS = CheckSettings.quick()
SHEAR = np.array([[1.0, 0.03, -0.02], [0.0, 0.98, 0.04], [0.0, 0.0, 1.03]])
"""Deformation of the cubic cell (rows → rows · SHEAR): triclinic, no symmetry left."""


@pytest.fixture(scope="module")
def model():
    return PhysNet(features=8, max_degree=1, num_iterations=1, n_res=1, num_basis_functions=8, cutoff=4.0,
                   charges=False, zbl=False, max_atomic_number=29, param_dtype=jnp.float64)


@pytest.fixture(scope="module")
def params(model):
    return perturbed_params(init_params(model, 0), scale=0.2, seed=1)


def copper_atoms():
    atoms = bulk("Cu", cubic=True)
    atoms.set_cell(atoms.cell[:] @ SHEAR, scale_atoms=True)
    atoms.rattle(0.05, seed=3)
    atoms.wrap()
    return atoms


@pytest.fixture(scope="module")
def copper():
    atoms = copper_atoms()
    return Structure(atoms.numbers, atoms.positions, 0.0, "Cu fcc", atoms.cell[:])


@pytest.fixture(scope="module")
def report(model, params, copper):
    return check_model(model, params, [copper], settings=SETTINGS,
                       groups=("forces", "invariance", "smoothness", "stability", "precision"))


def test_a_correct_model_passes_every_row_of_a_crystal(report, copper):
    ids = [c.id for c in report.checks]
    assert ids == ["forces.fd.total", "forces.fd.network", "forces.fd.stress", "invariance.net_force",
                   "invariance.rotation", "invariance.reflection", "invariance.translation", "invariance.wrapping",
                   "invariance.permutation", "invariance.padding", "invariance.batch", "invariance.supercell",
                   "smoothness.strain", "stability.curvature", "stability.nve_energy", "stability.nve_max_force",
                   "precision.float32_forces", "precision.float32_energy", "precision.float32_stress"]
    assert [(c.id, c.status, c.message) for c in report.checks if c.status != "pass"] == []
    float32_stress = report.by_id("precision.float32_stress")  # full float32 (not 0: both sides float64 would agree)
    assert float32_stress.unit == "GPa" and 1e-9 < float32_stress.value < float32_stress.warn_above / 10
    assert float32_stress.details["max_abs_stress_GPa"] > 1.0
    stress = report.by_id("forces.fd.stress")
    assert stress.unit == "GPa" and stress.details["ratio"] == pytest.approx(1.0, abs=1e-6)
    assert stress.details["ratio_judged"] and stress.details["max_abs_numerical_GPa"] > 1.0
    assert report.by_id("invariance.translation").message.startswith("shift by")
    summary = report.to_dict()["structures"][0]
    assert summary["volume_A3"] == pytest.approx(abs(np.linalg.det(copper_atoms().cell[:])))
    assert set(summary["not_checked"]) == {"invariance.torque"}
    strain = report.by_id("smoothness.strain")
    assert strain.details["scale_range"] == [0.9, 1.1] and strain.details["pairs_crossing"]["message passing"] > 10
    assert strain.details["discontinuities"] == []
    lengths = np.linalg.norm(_pair_vectors(copper, 4.0 / 0.9), axis=-1)
    scales = np.unique(4.0 / lengths[(lengths > 4.0 / 1.1) & (lengths < 4.0 / 0.9)])
    nearest = scales[np.argsort(np.abs(scales - 1.0))][:8]  # the 8 crossings nearest to s = 1 are always refined
    grid = np.linspace(0.9, 1.1, strain.details["points"])
    assert len(scales) == strain.details["pairs_crossing"]["message passing"]
    assert strain.details["crossing_intervals_refined"] == len(set(np.searchsorted(grid, nearest) - 1)) > 2


def _plus_pair_term(model, pair_energy, differentiable=True):
    """The model plus ½ Σ over the message-passing edges within its cutoff of ``pair_energy(d)`` (eV, d Å, images
    included), with its forces and stress by autodiff (``differentiable`` False: an energy alone)."""
    def fn(p, batch):
        out = apply_batch(model, p, batch)

        def extra(positions, strain):
            vectors = (positions[batch.src_idx] - positions[batch.dst_idx] + batch.shifts) @ (jnp.eye(3) + strain)
            d = jnp.linalg.norm(vectors, axis=-1)
            return 0.5 * jnp.sum(jnp.where(batch.edge_mask, pair_energy(jnp.where(batch.edge_mask, d, 1.0)), 0.0))

        if not differentiable:
            return {**out, "energy": out["energy"].at[0].add(extra(batch.positions, jnp.zeros((3, 3))))}
        energy, (gradient, strain_gradient) = jax.value_and_grad(extra, argnums=(0, 1))(batch.positions,
                                                                                        jnp.zeros((3, 3)))
        volume = jnp.abs(jnp.linalg.det(batch.cells[0]))
        return {**out, "energy": out["energy"].at[0].add(energy), "forces": out["forces"] - gradient,
                "stress": out["stress"].at[0].add(strain_gradient / volume)}
    return fn


def test_a_hard_cutoff_fails_the_strain_scan_of_a_crystal(model, params, copper):
    """0.2 eV·Å / d per pair cut hard at the 4 Å cutoff, forces and stress consistent: the scan's energy and forces
    jump where a pair crosses 4 Å, at s = 4 Å / d."""
    fn = _plus_pair_term(model, lambda d: 0.2 / d)
    row = check_model(model, params, [copper], energy_and_forces=fn, groups=("smoothness",),
                      settings=SETTINGS).by_id("smoothness.strain")
    found = row.details["discontinuities"]
    assert row.status == "fail" and {f["kind"] for f in found} == {"force", "energy"}
    lengths = np.linalg.norm(np.asarray(_pair_vectors(copper, 4.0 / 0.9)), axis=-1)
    crossings = 4.0 / lengths
    assert all(np.any((crossings >= f["between_scale"][0]) & (crossings <= f["between_scale"][1])) for f in found)


def test_a_small_energy_step_the_stress_does_not_see_fails_the_strain_scan(model, params, copper):
    """5 µeV per pair within the cutoff, without forces or stress: a step at each crossing, found by refining the
    intervals where pairs cross the cutoff."""
    fn = _plus_pair_term(model, lambda d: 5e-6 * jnp.ones_like(d), differentiable=False)
    row = check_model(model, params, [copper], energy_and_forces=fn, groups=("smoothness",),
                      settings=SETTINGS).by_id("smoothness.strain")
    found = row.details["discontinuities"]
    assert row.status == "fail" and {f["kind"] for f in found} == {"energy"}
    assert any(f["size"] == pytest.approx(5e-6, rel=0.05) for f in found), found


def test_a_crystal_whose_pairs_cross_no_cutoff_in_the_scan_warns(model, params):
    """Unrattled fcc of a = 4.5 Å: shells at 3.18 and 4.5 Å, none between 4 Å / 1.1 and 4 Å / 0.9."""
    atoms = bulk("Cu", cubic=True, a=4.5)
    crystal = Structure(atoms.numbers, atoms.positions, 0.0, "Cu fcc expanded", atoms.cell[:])
    row = check_model(model, params, [crystal], groups=("smoothness",), settings=SETTINGS).by_id("smoothness.strain")
    assert row.details["pairs_crossing"] == {"message passing": 0}
    assert row.status == "warn" and "cutoffs no pair crosses within the scan: message passing" in row.message


def _pair_vectors(structure, reach):
    dst, src, shifts = periodic_pairs(structure.positions, structure.cell, reach)
    return structure.positions[src] - structure.positions[dst] + shifts


def test_the_finite_strain_stress_is_ases_stress_of_emt_copper():
    """numerical_stress (sign, volume, symmetric strain, Voigt pairs) against ASE's own σ of EMT, at the cell and at
    a strained state D₀: the check's convention is ASE's (positive under tension, eV/Å³)."""
    atoms = copper_atoms()
    atoms.calc = EMT()
    positions, cell = atoms.positions.copy(), atoms.cell[:].copy()

    def energies(deformations):
        values = []
        for d in deformations:
            atoms.set_cell(cell @ d, scale_atoms=False)
            atoms.positions = positions @ d
            values.append(atoms.get_potential_energy())
        return np.array(values)

    for deformation in (np.eye(3), np.eye(3) + np.array([[0.02, 0.01, 0.0], [0.01, -0.01, 0.005],
                                                         [0.0, 0.005, 0.015]])):
        numeric = numerical_stress(energies, cell, deformation, 1e-5)
        energies(deformation[None])
        reference = atoms.get_stress(voigt=False)
        assert np.max(np.abs(reference)) > 1.0 * GPA
        np.testing.assert_allclose(numeric, reference, rtol=0.0, atol=1e-7)
    assert strain_steps(1e-5).shape == (12, 3, 3)


def _wrapped(model, transform):
    """An energy/force function: the model's output changed by ``transform(out, batch)``."""
    return lambda p, batch: transform(apply_batch(model, p, batch), batch)


@pytest.mark.parametrize("name, transform, message", [
    ("flipped", lambda out, batch: {**out, "stress": -out["stress"]}, "sign flipped (analytic/numerical = -1"),
    ("half volume", lambda out, batch: {**out, "stress": 2.0 * out["stress"]},
     "analytic/numerical = 2 (a wrong volume"),
    ("double volume", lambda out, batch: {**out, "stress": 0.5 * out["stress"]},
     "analytic/numerical = 0.5 (a wrong volume"),
])
def test_a_stress_of_the_wrong_sign_or_volume_fails_its_finite_strain_row(model, params, copper, name, transform,
                                                                         message):
    evaluator = Evaluator(model, cast_to_float64(params), copper, _wrapped(model, transform))
    [row] = check_stress(evaluator, 0, SETTINGS, Thresholds())
    assert row.id == "forces.fd.stress" and row.status == "fail" and message in row.message
    assert row.details["sign"] == ("flipped" if name == "flipped" else "same")


def _stress_rounded_in_float32(out, batch, bits: int):
    """The float32 stress rounded to ``bits`` mantissa bits (float64 untouched): a pressure computed at reduced
    precision, forces and energy left alone."""
    if batch.positions.dtype != jnp.float32:
        return out
    mantissa, exponent = jnp.frexp(out["stress"])
    return {**out, "stress": jnp.ldexp(jnp.round(mantissa * 2.0 ** bits) / 2.0 ** bits, exponent)}


@pytest.mark.parametrize("bits, status", [(10, "warn"), (5, "fail")])
def test_a_float32_stress_at_reduced_precision_warns_or_fails_its_row_alone(model, params, copper, bits, status):
    """|σ| up to ~11 GPa rounded to 10 mantissa bits is off by up to 2⁻¹¹ · 16 GPa ≈ 8e-3 GPa (warn, above 1e-3), to
    5 bits by up to 0.25 GPa (fail, above 0.01); the float32 forces and energy still pass."""
    report = check_model(model, params, [copper], groups=["precision"], settings=SETTINGS,
                         energy_and_forces=_wrapped(model, lambda out, batch: _stress_rounded_in_float32(out, batch,
                                                                                                          bits)))
    assert [(c.id, c.status) for c in report.checks] == [
        ("precision.float32_forces", "pass"), ("precision.float32_energy", "pass"), ("precision.float32_stress", status)]


def test_a_signed_volume_fails_only_the_reflection(model, params, copper):
    """σ = (1/det h) ∂E/∂ε without |det h|: right for the given (right-handed) cell, flipped in a mirrored one."""
    def signed(out, batch):
        det = jnp.linalg.det(batch.cells)
        return {**out, "stress": out["stress"] * (jnp.abs(det) / det)[:, None, None]}

    report = check_model(model, params, [copper], energy_and_forces=_wrapped(model, signed), groups=["invariance"],
                         settings=SETTINGS)
    assert [c.id for c in report.checks if c.status != "pass"] == ["invariance.reflection"]


def test_a_missing_image_fails_the_supercell_and_translation_rows(model, params, copper):
    """Pairs with an image shift left out of the energy: a self-consistent surface (its forces and stress are its
    exact derivatives), but not the crystal's: a bigger cell (or atoms wrapped elsewhere) turns images into
    pairs of the cell."""
    def without_images(p, batch):
        return apply_batch(model, p, batch.replace(edge_mask=batch.edge_mask & jnp.all(batch.shifts == 0.0, axis=-1)))

    report = check_model(model, params, [copper], energy_and_forces=without_images,
                         groups=["invariance"], settings=SETTINGS)
    failed = {c.id for c in report.checks if c.status == "fail"}
    assert {"invariance.supercell", "invariance.translation"} <= failed
    assert not failed & {"invariance.rotation", "invariance.permutation", "invariance.wrapping"}


def test_the_supercell_holds_each_atom_at_every_lattice_point_inside(copper):
    bigger, origin = supercell(copper, SUPERCELL)
    assert bigger.num_atoms == 2 * copper.num_atoms and bigger.volume == pytest.approx(2 * copper.volume)
    np.testing.assert_array_equal(origin, np.tile(np.arange(copper.num_atoms), 2))
    np.testing.assert_allclose(bigger.positions[copper.num_atoms:] - bigger.positions[:copper.num_atoms],
                               np.broadcast_to(copper.cell[2], (copper.num_atoms, 3)))
    with pytest.raises(ValueError, match="integer"):
        supercell(copper, np.eye(3))
    charged = dataclasses.replace(copper, total_charge=0.5)  # each copy of the cell carries its charge
    assert supercell(charged, SUPERCELL)[0].total_charge == pytest.approx(1.0, rel=1e-12)


def test_an_atom_a_rounding_error_outside_the_cell_is_wrapped_in(model, params, copper):
    """An atom at fraction −1e-17 (a rotated or converted file) lands at fraction 1.0 when moved by one cell vector,
    outside the cell again: check moves it once more, to 0."""
    positions = copper.positions.copy()
    positions[0] = [-1e-17, 0.0, 0.0]
    edge = Structure(copper.atomic_numbers, positions, 0.0, "edge", copper.cell)
    report = check_model(model, params, [edge], groups=["references"], settings=SETTINGS)
    assert [c.status for c in report.checks] == ["pass"]


def test_cli_checks_a_crystal_file_and_still_refuses_a_slab(model, params, tmp_path, capsys):
    checkpoint = str(save_checkpoint(tmp_path / "cu", model, params))
    atoms = copper_atoms()
    atoms.positions += atoms.cell[0] * 1.3  # unwrapped: check wraps the atoms into the cell itself
    atoms.write(tmp_path / "cu.extxyz")
    assert main([checkpoint, "--geometry", str(tmp_path / "cu.extxyz"), "--quick", "--only", "forces",
                 "--json", str(tmp_path / "report.json")]) == 0
    out = capsys.readouterr().out
    assert "periodic cell" in out and "not checked for a periodic cell: invariance.torque" not in out
    data = json.loads((tmp_path / "report.json").read_text())
    assert data["status"] == "pass" and "forces.fd.stress" in [c["id"] for c in data["checks"]]
    assert data["structures"][0]["not_checked"] == {}

    atoms.pbc = (True, True, False)
    atoms.write(tmp_path / "slab.extxyz")
    assert main([checkpoint, "--geometry", str(tmp_path / "slab.extxyz"), "--quick", "--only",
                 "forces"]) == 2
    error = capsys.readouterr().err
    assert "pbc T T F" in error and "a slab or a wire needs a cell vector across vacuum" in error
