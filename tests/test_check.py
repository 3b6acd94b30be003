"""physnetjax.check: a correct model passes; each deliberately broken one fails the check meant for it.

The broken models are energy/force functions injected into ``check_model``; each
wraps the same tiny float64 model, so only the defect differs. Checks run with
``CheckSettings.quick()`` on methanol (6 atoms).
"""

import dataclasses
import json
import re

import ase
import ase.io
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import DATA, perturbed_params, warnings_as_errors

from physnetjax import PhysNet, apply_batch, init_params, save_checkpoint
from physnetjax.check import CheckSettings, Structure, Thresholds, check_model, default_structures
from physnetjax.check.__main__ import main
from physnetjax.check.geometry import read_structures
from physnetjax.check.smoothness import bond_types, model_cutoffs
from physnetjax.data import DataError
from physnetjax.dipole_surface import DIPOLE_SURFACE_KEY, unreliable_ir_message
from physnetjax.distance_domain import DOMAIN_MARGIN, TRAINED_DISTANCES_KEY, DistanceDomain
from physnetjax.errors import PhysNetInputWarning
from physnetjax.pretrained import example_model_path
from physnetjax.training_record import TrainingRecord

SETTINGS = CheckSettings.quick()
MP_CUTOFF = 4.0


@pytest.fixture(scope="module")
def model():
    return PhysNet(features=8, max_degree=1, num_iterations=2, n_res=1, num_basis_functions=8, cutoff=MP_CUTOFF,
                   charges=True, zbl=True, zbl_cutoff=1.0, coulomb_lr_cutoff=5.0, param_dtype=jnp.float64)


@pytest.fixture(scope="module")
def params(model):
    return perturbed_params(init_params(model, 0), scale=0.1, seed=1)


@pytest.fixture(scope="module")
def methanol(molecules):
    z, r = molecules["methanol"]
    return Structure(z, r, 0.0, "methanol")


@pytest.fixture(scope="module")
def report(model, params, methanol):
    return check_model(model, params, [methanol], settings=SETTINGS)


def test_correct_model_passes_every_check(report):
    ids = {c.id for c in report.checks}
    expected = {"forces.fd.total", "forces.fd.network", "forces.fd.electrostatics", "forces.fd.repulsion",
                "invariance.net_force", "invariance.torque", "invariance.rotation", "invariance.reflection",
                "invariance.translation", "invariance.permutation", "invariance.padding", "invariance.batch",
                "smoothness.C-H", "smoothness.O-C", "smoothness.O-H", "stability.curvature",
                "stability.nve_energy", "stability.nve_max_force", "references.element_energies",
                "precision.float32_forces", "precision.float32_energy"}
    assert ids == expected
    assert [(c.id, c.status) for c in report.checks if c.status != "pass"] == []
    total = report.by_id("forces.fd.total")
    assert total.details["ratio"] == pytest.approx(1.0, abs=1e-5)
    weights = total.details["term_weights"]
    assert weights.pop("dispersion") is None  # the model has no dispersion term
    assert all(w == pytest.approx(1.0, abs=1e-4) for w in weights.values())
    assert all(not c.details["discontinuities"] for c in report.checks if c.group == "smoothness")


def test_scans_cross_every_cutoff(model, report):
    cutoffs = model_cutoffs(model)
    assert cutoffs == {"message passing": 4.0, "Coulomb switch": 2.0, "Coulomb long range": 5.0, "ZBL": 1.0}
    for c in report.checks:
        if c.group == "smoothness":
            low, high = c.details["range_A"]
            assert low < min(cutoffs.values()) and high > max(cutoffs.values())
            assert high - low == pytest.approx((c.details["points"] - 1) * c.details["step_A"], rel=1e-9)


def test_bond_types_one_per_element_pair(molecules):
    z, r = molecules["ethanol"]
    labels = [label for label, _, _ in bond_types(z, r)]
    assert sorted(labels) == ["C-C", "C-H", "O-C", "O-H"]


def test_json_schema_is_stable(report, tmp_path):
    path = tmp_path / "report.json"
    report.write_json(path)
    data = json.loads(path.read_text())
    assert list(data) == ["schema", "schema_version", "physnetjax_version", "status", "counts", "checkpoint",
                          "model", "settings", "structures", "checks"]
    assert data["schema"] == "physnetjax.check" and data["schema_version"] == 1
    assert data["status"] == "pass" and data["counts"] == {"pass": len(data["checks"]), "warn": 0, "fail": 0}
    assert list(data["structures"][0]) == ["index", "name", "formula", "num_atoms", "total_charge"]
    for check in data["checks"]:
        assert list(check) == ["id", "group", "structure", "status", "value", "unit", "warn_above",
                               "fail_above", "message", "details"]
        assert check["group"] in ("forces", "invariance", "smoothness", "stability", "references", "precision")
        assert isinstance(check["value"], float)


def _with_forces(out, forces):
    return {**out, "forces": forces}


def test_flipped_force_sign_fails_the_fd_check(model, params, methanol):
    def flipped(p, batch):
        out = apply_batch(model, p, batch)
        return _with_forces(out, -out["forces"])

    result = check_model(model, params, [methanol], energy_and_forces=flipped, groups=("forces",), settings=SETTINGS)
    total = result.by_id("forces.fd.total")
    assert total.status == "fail" and "sign flipped" in total.message
    assert total.details["ratio"] == pytest.approx(-1.0, abs=1e-5)
    weights = total.details["term_weights"]
    assert weights.pop("dispersion") is None  # the model has no dispersion term
    assert all(w == pytest.approx(-1.0, abs=1e-4) for w in weights.values())


def test_forces_scaled_by_half_a_percent_fail_with_their_ratio(model, params, methanol):
    # A rounded unit constant scales every force: the check names the slope, 1.005 (|s − 1| = 5 fd_ratio);
    # the reason said "analytic/numerical = 1" and "network ×1" (three digits), hiding the deviation it failed on.
    def scaled(p, batch):
        out = apply_batch(model, p, batch)
        return _with_forces(out, 1.005 * out["forces"])

    result = check_model(model, params, [methanol], energy_and_forces=scaled, groups=("forces",), settings=SETTINGS)
    total = result.by_id("forces.fd.total")
    assert total.status == "fail" and total.details["ratio"] == pytest.approx(1.005, abs=1e-5)
    assert "; analytic/numerical = 1.005; terms in the total force: network ×1.00" in total.message


def test_doubled_pair_term_fails_and_is_named(model, params, methanol):
    def doubled_repulsion(p, batch):
        out = apply_batch(model, p, batch)
        grad = jax.grad(lambda pos: apply_batch(model, p, batch.replace(positions=pos))["repulsion"].sum())
        return _with_forces(out, out["forces"] - grad(batch.positions))

    result = check_model(model, params, [methanol], energy_and_forces=doubled_repulsion, groups=("forces",),
                         settings=SETTINGS)
    assert result.by_id("forces.fd.total").status == "fail"
    repulsion = result.by_id("forces.fd.repulsion")
    assert repulsion.status == "fail"
    assert repulsion.details["weight_in_total"] == pytest.approx(2.0, abs=1e-4)
    assert result.by_id("forces.fd.network").status == "pass"
    assert result.by_id("forces.fd.electrostatics").status == "pass"


def test_hard_cutoff_fails_the_smoothness_scan(model, params, methanol):
    """E gains ½ Σ_ij 0.2 eV·Å / r_ij over the message-passing edges, cut hard at 4 Å (forces consistent)."""
    def hard_cutoff(p, batch):
        def energy(pos):
            d = jnp.linalg.norm(pos[batch.src_idx] - pos[batch.dst_idx], axis=-1)
            extra = 0.5 * jnp.sum(jnp.where(batch.edge_mask, 0.2 / jnp.where(batch.edge_mask, d, 1.0), 0.0))
            return apply_batch(model, p, batch.replace(positions=pos))["energy"][0] + extra

        out = apply_batch(model, p, batch)
        e, grad = jax.value_and_grad(energy)(batch.positions)
        return {**out, "energy": out["energy"].at[0].set(e), "forces": -grad}

    result = check_model(model, params, [methanol], energy_and_forces=hard_cutoff, groups=("smoothness",),
                         settings=SETTINGS)
    assert {c.status for c in result.checks} == {"fail"}
    for c in result.checks:
        found = c.details["discontinuities"]
        assert {f["kind"] for f in found} == {"force", "energy"}
        assert any(f["between_A"][0] <= MP_CUTOFF <= f["between_A"][1] for f in found)
        for f in found:  # each between two neighbouring points of the scan
            assert f["between_A"][1] - f["between_A"][0] == pytest.approx(c.details["step_A"], rel=1e-9)


def test_a_small_energy_step_at_the_cutoff_is_found_by_refining_the_cutoff_interval(model, params, methanol):
    """E gains 5 µeV per atom pair closer than 4 Å, none beyond (a step the forces do not see): smaller than the
    trapezoid residuals of the smooth model elsewhere on the coarse scan, it is still found, because the interval
    holding each cutoff is always refined."""
    def stepped(p, batch):
        out = apply_batch(model, p, batch)
        d = jnp.linalg.norm(batch.positions[batch.src_idx] - batch.positions[batch.dst_idx], axis=-1)
        within = (batch.edge_mask & (d < MP_CUTOFF)).astype(d.dtype)
        step = 0.5 * 5e-6 * jax.ops.segment_sum(within, batch.atom_segments[batch.dst_idx], batch.num_molecules)
        return {**out, "energy": out["energy"] + step}

    result = check_model(model, params, [methanol], energy_and_forces=stepped, groups=("smoothness",),
                         settings=SETTINGS)
    for c in result.checks:
        found = [f for f in c.details["discontinuities"] if f["between_A"][0] <= MP_CUTOFF <= f["between_A"][1]]
        assert c.status == "fail" and [f["kind"] for f in found] == ["energy"], c.details["discontinuities"]
        assert found[0]["size"] == pytest.approx(5e-6, rel=0.05)
        assert c.details["max_energy_residual_eV"] > 5e-6  # the step is not what stands out on the coarse scan


def test_ghost_atom_leak_fails_only_padding_invariance(model, params, methanol):
    """Real atoms feel 0.1 eV · exp(−|r_i − r_g|²/2 Å²) from every padded atom g (forces consistent)."""
    def leaky(p, batch):
        def leak(pos):
            pairs = batch.atom_mask[:, None] & ~batch.atom_mask[None, :]
            d2 = jnp.sum((pos[:, None] - pos[None]) ** 2, axis=-1)
            per_atom = 0.1 * jnp.sum(jnp.where(pairs, jnp.exp(-0.5 * d2), 0.0), axis=1)
            return jax.ops.segment_sum(per_atom, batch.atom_segments, batch.num_molecules)

        out = apply_batch(model, p, batch)
        grad = jax.grad(lambda pos: leak(pos).sum())(batch.positions)
        return {**out, "energy": out["energy"] + leak(batch.positions), "forces": out["forces"] - grad}

    result = check_model(model, params, [methanol], energy_and_forces=leaky, groups=("invariance",),
                         settings=SETTINGS)
    failed = [c.id for c in result.checks if c.status == "fail"]
    assert failed == ["invariance.padding"]


def _per_molecule(batch, values):
    """Σ over each molecule's real atoms of ``values`` (N, ...) → (M, ...)."""
    mask = batch.atom_mask.reshape((-1,) + (1,) * (values.ndim - 1))
    return jax.ops.segment_sum(jnp.where(mask, values, 0.0), batch.atom_segments, batch.num_molecules)


def test_a_chiral_energy_term_fails_only_the_reflection_check(model, params, methanol):
    """E gains ε det(A, B, C) per molecule, A = Σ Z_i x_i, B = Σ |x_i|² x_i, C = Σ |x_i|⁴ x_i, x_i = r_i − r̄: a
    pseudoscalar, unchanged by rotations, translations, permutations and padding, odd under reflections (forces
    consistent). The reflection check must be the one to fail, and a rotation must stay a rotation."""
    def chiral(p, batch):
        def extra(pos):
            count = jnp.maximum(_per_molecule(batch, jnp.ones(pos.shape[0])), 1.0)  # empty slot: 0 atoms
            x = pos - (_per_molecule(batch, pos) / count[:, None])[batch.atom_segments]
            x2 = jnp.sum(x * x, axis=-1, keepdims=True)
            columns = [_per_molecule(batch, w * x) for w in (batch.atomic_numbers[:, None], x2, x2 * x2)]
            return 1e-2 * jnp.linalg.det(jnp.stack(columns, axis=-1))

        out = apply_batch(model, p, batch)
        grad = jax.grad(lambda pos: extra(pos).sum())(batch.positions)
        return {**out, "energy": out["energy"] + extra(batch.positions), "forces": out["forces"] - grad}

    result = check_model(model, params, [methanol], energy_and_forces=chiral, groups=("invariance",),
                         settings=SETTINGS)
    assert [c.id for c in result.checks if c.status != "pass"] == ["invariance.reflection"]
    assert result.by_id("invariance.reflection").details["energy_difference_eV"] > Thresholds().invariance[1]


def test_curvature_of_a_harmonic_well_is_its_force_constant(model, params, methanol):
    """E = ½ k Σ|r_i − r_i⁰|²: every atom moved by δ changes its force by exactly k δ, so κ = k (eV/Å²); k = 1000
    lies between the warning (500) and failure (2000) bounds."""
    from physnetjax.check.evaluate import Evaluator, cast_to_float64
    from physnetjax.check.stability import check_curvature

    k, r0, n = 1000.0, jnp.asarray(methanol.positions), methanol.num_atoms

    def well(p, batch):
        out = apply_batch(model, p, batch)
        d = jnp.where(batch.atom_mask[:, None], batch.positions - jnp.zeros_like(batch.positions).at[:n].set(r0),
                      0.0)
        return {**out, "energy": 0.5 * k * _per_molecule(batch, jnp.sum(d * d, axis=-1)), "forces": -k * d}

    with jax.enable_x64(True):
        [result] = check_curvature(Evaluator(model, cast_to_float64(params), methanol, well), 0, SETTINGS,
                                   Thresholds())
    assert result.unit == "eV/Å²" and result.value == pytest.approx(k, rel=1e-10)
    assert result.status == "warn"


def test_nve_energy_deviation_of_free_flight_on_a_tilted_surface(model, params, methanol):
    """E = c Σ_i x_i reported with zero forces: the atoms fly freely, r_i(t) = r_i(0) + p_i t / m_i, so
    E_tot(t) − E_tot(0) = c t Σ_i p_ix / m_i exactly (velocity Verlet without forces). Over T = steps × dt fs the
    largest deviation is |c Σ p_ix/m_i| T per atom (meV), the drift that slope per ps, the fluctuation about it 0."""
    import ase.data

    from physnetjax.check.evaluate import Evaluator, cast_to_float64
    from physnetjax.check.stability import check_nve
    from physnetjax.md import maxwell_boltzmann_momenta

    c = 0.05  # eV/Å

    def tilted(p, batch):
        out = apply_batch(model, p, batch)
        return {**out, "energy": c * _per_molecule(batch, batch.positions[:, 0]),
                "forces": jnp.zeros_like(out["forces"])}

    n = methanol.num_atoms
    with jax.enable_x64(True):
        energy, max_force = check_nve(Evaluator(model, cast_to_float64(params), methanol, tilted), 0, SETTINGS,
                                      Thresholds())
        masses = ase.data.atomic_masses[methanol.atomic_numbers]
        momenta = np.asarray(maxwell_boltzmann_momenta(jax.random.PRNGKey(SETTINGS.seed),
                                                       jnp.asarray(masses, jnp.float64), SETTINGS.nve_temperature))
    rate = c * float(np.sum(momenta[:, 0] / masses))  # eV/fs
    duration = SETTINGS.nve_steps * SETTINGS.nve_timestep
    assert energy.unit == "meV/atom" and abs(rate) * duration * 1e3 / n > 1.0
    assert energy.value == pytest.approx(abs(rate) * duration * 1e3 / n, rel=1e-9)
    assert energy.details["drift_meV_per_atom_per_ps"] == pytest.approx(rate * 1e3 * 1e3 / n, rel=1e-9)
    assert energy.details["fluctuation_meV_per_atom"] == pytest.approx(0.0, abs=1e-9)
    assert max_force.value == 0.0


def test_nve_max_force_is_the_largest_of_every_step_not_of_the_recorded_frames(model, params, methanol):
    """The check recorded every 10th step and reported the largest |F_i| of those frames (4.17 instead of 4.54 eV/Å
    for the shipped model at 300 K): a stride-10 run must report what a stride-1 run sees."""
    import dataclasses

    from physnetjax.check.evaluate import Evaluator, cast_to_float64
    from physnetjax.check.stability import run_nve

    with jax.enable_x64(True):
        evaluator = Evaluator(model, cast_to_float64(params), methanol)
        strided = run_nve(evaluator, SETTINGS)
        every = run_nve(evaluator, dataclasses.replace(SETTINGS, nve_stride=1))
    assert SETTINGS.nve_stride == 10 and len(strided["max_force_eV_per_A"]) == SETTINGS.nve_steps // 10 + 1
    np.testing.assert_allclose(every["conserved_eV"][::10], strided["conserved_eV"], rtol=0, atol=1e-12)
    assert np.max(strided["max_force_eV_per_A"]) == pytest.approx(np.max(every["max_force_eV_per_A"]), rel=1e-12)
    peaks = every["max_force_eV_per_A"][1:].reshape(-1, 10).max(axis=1)
    np.testing.assert_allclose(strided["max_force_eV_per_A"][1:], peaks, rtol=1e-12)


def test_unknown_group_and_bad_structure_are_rejected(model, params, methanol):
    with pytest.raises(ValueError, match="unknown check groups"):
        check_model(model, params, [methanol], groups=("forces", "vibes"))
    with pytest.raises(ValueError, match="at least 2 atoms"):
        check_model(model, params, [(np.array([1]), np.zeros((1, 3)))], groups=("forces",))


def test_default_geometry_is_stored_beside_a_legacy_checkpoint():
    structures = default_structures(DATA / "legacy" / "C_synthD" / "epoch-30", {}, limit=2)
    assert [s.name for s in structures] == ["geometries.npz[0]", "geometries.npz[1]"]
    assert structures[0].num_atoms == 15 and structures[0].positions.dtype == np.float64


def test_default_geometry_of_a_shipped_model_is_the_xyz_beside_it(tmp_path, caplog):
    """The CO2 model was checked on ethanol frames of the bundled dataset (logged at INFO only)."""
    structures = default_structures(example_model_path("co2"), {}, limit=3)
    assert [s.name for s in structures] == ["co2.xyz[0]"] and structures[0].atomic_numbers.tolist() == [6, 8, 8]
    with caplog.at_level("WARNING"):
        structures = default_structures(tmp_path / "ckpt", {"data": [str(tmp_path / "co2.npz")]}, limit=2)
    assert [s.name for s in structures] == ["ethanol_gfn2.npz[0]", "ethanol_gfn2.npz[1]"]
    assert f"training data {tmp_path / 'co2.npz'} not found" in caplog.text
    assert "checking 2 frame(s) of the bundled dataset" in caplog.text


def test_cli_names_the_model_it_checks_when_none_is_given(capsys):
    """Without a checkpoint argument check ran on the shipped example model and never said so."""
    assert main(["--quick", "--only", "forces", "--frames", "1"]) == 0
    stdout = capsys.readouterr().out
    assert stdout.startswith(f"no checkpoint given: checking the shipped example model\n"
                             f"checkpoint: {example_model_path().resolve()}\n")


def test_cli_json_and_exit_codes(model, params, methanol, tmp_path, capsys):
    checkpoint = save_checkpoint(tmp_path / "ckpt", model, params)
    geometry = tmp_path / "methanol.npz"
    np.savez(geometry, Z=methanol.atomic_numbers, R=methanol.positions)
    out = tmp_path / "check.json"
    code = main([str(checkpoint), "--geometry", str(geometry), "--quick", "--only", "forces", "--json", str(out)])
    assert code == 0
    data = json.loads(out.read_text())
    assert data["status"] == "pass" and data["structures"][0]["name"] == "methanol.npz[0]"
    assert {c["group"] for c in data["checks"]} == {"forces"}
    stdout = capsys.readouterr().out
    assert "overall: PASS" in stdout and stdout.startswith(f"checkpoint: {checkpoint.resolve()}\n")
    assert main([str(tmp_path / "missing"), "--quick"]) == 2


@pytest.mark.parametrize("frames", ["0", "-2"])
def test_cli_refuses_frames_below_one(frames, tmp_path, capsys):
    """--frames -2 checked all but the last 2 structures (a Python slice); --frames 0 gave an unclear message.
    Refused before the checkpoint is read."""
    assert main([str(tmp_path / "missing"), "--frames", frames, "--quick"]) == 2
    assert capsys.readouterr().err.strip() == f"python -m physnetjax.check: error: --frames must be >= 1, received {frames}"


def test_cli_exits_1_on_failure(model, params, methanol, tmp_path):
    """Bonds squeezed to 40 %: ZBL makes the surface a cliff and NVE blows up."""
    checkpoint = save_checkpoint(tmp_path / "ckpt", model, params)
    geometry = tmp_path / "squashed.npz"
    squashed = dataclasses.replace(methanol, positions=methanol.positions * 0.4)
    np.savez(geometry, Z=squashed.atomic_numbers, R=squashed.positions)
    with pytest.warns(PhysNetInputWarning, match="very close atoms"):   # the squeeze is the point here
        assert main([str(checkpoint), "--geometry", str(geometry), "--quick", "--only", "stability"]) == 1


def test_energies_only_and_one_geometry_paths_equal_the_batched_evaluation(model, params, methanol):
    """The finite differences use Evaluator.energies (no force pass) and the analytic forces come from
    Evaluator.evaluate_one; both must give exactly what the chunked energy+force evaluation gives."""
    from physnetjax.check.evaluate import CHUNK, Evaluator, cast_to_float64

    with jax.enable_x64(True):
        evaluator = Evaluator(model, cast_to_float64(params), methanol)
        r = np.asarray(methanol.positions, np.float64)
        moves = np.random.default_rng(0).normal(scale=0.05, size=(CHUNK + 3, *r.shape))
        geometries = r[None] + moves  # more than one chunk, the last one padded
        energies, forces = evaluator.evaluate(geometries)
        np.testing.assert_allclose(evaluator.energies(geometries), energies, rtol=1e-13, atol=1e-12)
        for k in (0, CHUNK + 2):
            one_energies, one_forces = evaluator.evaluate_one(geometries[k])
            np.testing.assert_allclose(one_energies, energies[k], rtol=1e-13, atol=1e-12)
            np.testing.assert_allclose(one_forces, forces[k], rtol=1e-12, atol=1e-12)
        assert energies.shape == (CHUNK + 3, 5) and not np.allclose(energies[0], energies[1])


def test_slabs_in_reach_of_their_images_are_refused_and_vacuum_boxes_checked(model, params, methanol,
                                                                             tmp_path, capsys):
    """A slab or wire frame (pbc set along one or two directions) was checked as a cluster without its images, with a
    warning only. Such frames whose images lie within the model's reach are refused (CLI: one line, exit 2, naming
    file, frame and nearest image; .npz cells too); a molecule in a vacuum box wider than the reach is checked as the
    isolated molecule it is. (Cells periodic along x, y and z are checked as crystals: test_check_periodic.py.)"""
    h2 = [[0.0, 0.0, 0.0], [0.74, 0.0, 0.0]]
    ase.io.write(tmp_path / "frames.extxyz", [ase.Atoms("H2", positions=h2),
                                              ase.Atoms("H2", positions=h2, cell=[3.0, 3.0, 3.0],
                                                        pbc=[True, True, False])])
    assert main([str(example_model_path("co2")), "--geometry", str(tmp_path / "frames.extxyz"), "--quick",
                 "--frames", "2", "--only", "forces"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and re.fullmatch(
        r"python -m physnetjax.check: error: 1 periodic frame\(s\) have atoms within [\d.]+ Å \(the [\w' ]+\) of a "
        r"periodic image \(frames 1; e\.g\. frames\.extxyz\[1\], pbc T T F, cell \[\[3\.0, 0\.0, 0\.0\].* Å: image "
        r"at 2\.26 Å\): check takes molecules and cells periodic along x, y and z \(crystals, liquids, with their "
        r"images\); a slab or a wire needs a cell vector across vacuum wider than the model's reach along each open "
        r"direction and pbc True there \(its checks are then those of the isolated slab\), or the ASE calculator "
        r"physnetjax.PhysNetCalculator, which takes partial pbc", lines[0]), lines[0]

    np.savez(tmp_path / "tight.npz", Z=methanol.atomic_numbers, R=methanol.positions, cell=np.eye(3) * 6.0,
             pbc=[True, False, False])
    with pytest.raises(DataError, match=r"^1 periodic frame\(s\) have atoms within 5 Å \(the reach of the model's "
                                        r"pair terms\) of a periodic image \(frames 0; e\.g\. tight\.npz\[0\], "
                                        r"pbc T F F"):
        check_model(model, params, read_structures(tmp_path / "tight.npz"), groups=["references"], settings=SETTINGS)
    boxed = ase.Atoms(numbers=methanol.atomic_numbers, positions=methanol.positions, pbc=True)
    boxed.center(vacuum=3.0)  # images 6 Å apart at least, beyond the reach 5 Å
    ase.io.write(tmp_path / "vacuum.extxyz", boxed)
    with warnings_as_errors():
        structures = read_structures(tmp_path / "vacuum.extxyz")
        report = check_model(model, params, structures, groups=["references"], settings=SETTINGS)
    np.testing.assert_array_equal(structures[0].cell, boxed.cell[:])
    assert [c.status for c in report.checks] == ["pass"]


def test_an_invalid_default_geometry_is_named_as_picked_automatically(tmp_path, capsys):
    """Without --geometry the check took the first .xyz beside the checkpoint; a chlorine file there gave
    'cl.xyz[0]: element(s) Cl ... outside this model's range', naming a file the user never gave."""
    import shutil

    shutil.copytree(example_model_path("co2"), tmp_path / "model")
    ase.io.write(tmp_path / "cl.xyz", ase.Atoms("Cl2", positions=[[0.0, 0.0, 0.0], [0.0, 0.0, 2.0]]))
    assert main([str(tmp_path / "model"), "--quick", "--only", "forces"]) == 2
    err = capsys.readouterr().err
    assert "cl.xyz[0]: element(s) Cl (Z=17) at atom(s) 0, 1 are outside this model's range" in err
    assert (f"(no --geometry was given, so the frames were picked automatically from {tmp_path / 'cl.xyz'}, beside "
            "the checkpoint; pass --geometry FILE with frames of this model's own system)") in err
    (tmp_path / "cl.xyz").write_text("garbage\n")
    with pytest.raises(ValueError, match=r"ASE cannot read it .* picked automatically from .*cl.xyz, beside"):
        default_structures(tmp_path / "model", {}, limit=1)
    assert [s.name for s in default_structures(tmp_path / "empty" / "ckpt", {}, limit=1, max_atomic_number=8)] == [
        "ethanol_gfn2.npz[0]"]
    with pytest.raises(ValueError, match=r"element\(s\) O \(Z=8\).* picked automatically from .*ethanol_gfn2.npz, "
                                         r"the bundled example dataset"):
        default_structures(tmp_path / "empty" / "ckpt", {}, limit=1, max_atomic_number=6)


def test_read_structures_keeps_each_frames_total_charge(tmp_path):
    """Frames given to check carry their total charge: an .npz's Q per frame, an extxyz frame's info["charge"]
    (the model's charge correction and the Coulomb term act on it, so a charged frame checked as neutral would
    be another structure)."""
    z = np.array([[8, 1, 1, 0], [7, 1, 1, 1]])
    r = np.zeros((2, 4, 3))
    r[:, 1:, 0] = [0.96, 0.0, 0.0]
    r[:, 2, 1] = 0.96
    r[1, 3, 2] = 1.0
    np.savez(tmp_path / "ions.npz", Z=z, R=r, N=np.array([3, 4]), Q=np.array([-1.0, 1.0]))
    assert [s.total_charge for s in read_structures(tmp_path / "ions.npz")] == [-1.0, 1.0]
    hydronium = ase.Atoms("OH3", positions=[[0, 0, 0], [0.97, 0, 0], [-0.3, 0.92, 0], [-0.3, -0.46, 0.8]])
    hydronium.info["charge"] = 1
    water = ase.Atoms("OH2", positions=[[0, 0, 0], [0.96, 0, 0], [-0.24, 0.93, 0]])
    ase.io.write(tmp_path / "ions.extxyz", [hydronium, water], format="extxyz")
    assert [s.total_charge for s in read_structures(tmp_path / "ions.extxyz")] == [1.0, 0.0]


def test_forces_at_a_stationary_point_are_judged_by_their_error_and_their_ratio_at_a_displaced_geometry(
        model, params, methanol):
    """At a reference minimum every force is round-off: analytic 1e-6 eV/Å off a numerical 1e-6 eV/Å gave
    "analytic/numerical = 0.2" and failed although the error was below the row's own warn bound (the shipped CO2
    and IR-ethanol models at their example geometries). The total energy (and the network term) here is tilted so
    that the force at R is the small field g, and made a well of 10 eV/Å² about R (a minimum's curvature); the
    reported forces are off by −0.8 g everywhere. The forces are
    now also compared at R moved 0.05 Å per atom, where they are large and the ratio means something; with no
    move (displacement 0) the ratio of the round-off field is reported but not judged."""
    from physnetjax.check.evaluate import Evaluator, cast_to_float64

    n = methanol.num_atoms
    r0 = jnp.asarray(methanol.positions)
    with jax.enable_x64(True):
        f0 = jnp.asarray(Evaluator(model, cast_to_float64(params), methanol).evaluate_one(methanol.positions)[1])
    g = 2e-6 * jnp.asarray(np.random.default_rng(3).normal(size=(n, 3)))

    def at_a_stationary_point(p, batch):
        out = apply_batch(model, p, batch)
        pad = jnp.zeros_like(batch.positions)
        d = jnp.where(batch.atom_mask[:, None], batch.positions - pad.at[:n].set(r0), 0.0)
        tilt = _per_molecule(batch, jnp.sum(d * pad.at[:n].set(f0 - g) + 5.0 * d * d, axis=-1))
        forces = out["forces"] - jnp.where(batch.atom_mask[:, None], pad.at[:n].set(f0 + 0.8 * g - g), 0.0) - 10.0 * d
        return {**out, "energy": out["energy"] + tilt, "nn_energy": out["nn_energy"] + tilt, "forces": forces}

    result = check_model(model, params, [methanol], energy_and_forces=at_a_stationary_point, groups=("forces",),
                         settings=SETTINGS)
    assert [(c.id, c.status, c.message) for c in result.checks if c.status != "pass"] == []
    total = result.by_id("forces.fd.total")
    at_r, displaced = total.details["per_geometry"]
    assert at_r["max_abs_numerical"] < 1e-5 and displaced["max_abs_numerical"] > 0.1
    assert total.value < Thresholds().fd_relative[0] and total.details["ratio_judged"]
    assert total.details["ratio"] == pytest.approx(1.0, abs=1e-4)

    still = dataclasses.replace(SETTINGS, displacement=0.0)
    result = check_model(model, params, [methanol], energy_and_forces=at_a_stationary_point, groups=("forces",),
                         settings=still)
    total = result.by_id("forces.fd.total")
    assert total.status == "pass" and not total.details["ratio_judged"]
    assert total.details["ratio"] == pytest.approx(0.2, abs=0.05)
    assert f"ratio {total.details['ratio']:.6g} (not judged: max |F_FD| 6.9e-06 eV/Å is too small" in total.message
    assert "the absolute error is judged" in total.message


def test_a_scan_never_pulls_an_atom_through_a_third_one(model, params):
    """Linear O=C=O: the O-C scan moved C (anchor O) along the axis straight through the other O at 2 × 1.16 Å, a
    collision the check reported as a discontinuity ("force jump 17 eV/Å at 2.284–2.304 Å" for the shipped CO2
    model). The scan now stretches a bond whose path keeps every third atom clear: C fixed, O pulled outward."""
    co2 = Structure(np.array([6, 8, 8], np.int32), np.array([[0.0, 0.0, 0.0], [1.16, 0.0, 0.0], [-1.16, 0.0, 0.0]]),
                    0.0, "linear CO2")
    result = check_model(model, params, [co2], groups=("smoothness",), settings=SETTINGS)
    [row] = result.checks
    assert row.id == "smoothness.O-C" and row.status == "pass", row.message
    assert row.details["atoms"] == [0, 1] and not row.details["truncated"]
    start, stop = row.details["range_A"]
    assert row.details["closest_other_A"] == pytest.approx(1.16 + start, abs=1e-9)  # O compressed towards C
    assert start < min(model_cutoffs(model).values()) and stop > max(model_cutoffs(model).values())
    assert f"other atoms kept ≥ {1.16 + start:.2f} Å from atom 1" in row.message


def test_a_scan_blocked_from_both_ends_is_cut_to_its_clear_stretch():
    """Atoms on a line at −1, 0, 1, 2 Å, bond 0–1 only: from either end the ray runs into a third atom, so the scan
    keeps the stretch around d₀ where no third atom comes closer than min(start, 0.6 × its distance)."""
    from physnetjax.check.smoothness import choose_scan

    r = np.array([[0.0, 0, 0], [1.0, 0, 0], [2.0, 0, 0], [-1.0, 0, 0]])
    cutoffs = {"message passing": 4.0}
    anchor, moving, plan = choose_scan(r, [(0, 1)], cutoffs, SETTINGS)
    assert plan["truncated"] and plan["full_range_A"][1] > 4.0
    assert (anchor, moving, plan["blocking_atom"]) == (0, 1, 2)
    assert plan["distances"][0] == pytest.approx(plan["full_range_A"][0])
    assert plan["distances"][-1] <= 2.0 - 0.6 + 1e-9 and plan["distances"][-1] > 2.0 - 0.6 - SETTINGS.scan_step
    assert plan["closest_other_A"] >= 0.6 - 1e-9


def test_a_model_whose_energy_ignores_the_geometry_warns(methanol, tmp_path, capsys):
    """A freshly initialised model without pair terms predicts a constant energy and zero forces: every check held
    trivially ("ratio n/a", "max |F| 0 → 0", "max ΔF 0") and the report said PASS. The force, smoothness and
    curvature rows now warn that the energy does not depend on the geometry."""
    flat = PhysNet(features=8, max_degree=1, num_iterations=2, n_res=1, num_basis_functions=8, cutoff=MP_CUTOFF,
                   charges=False, zbl=False, param_dtype=jnp.float64)
    checkpoint = save_checkpoint(tmp_path / "untrained", flat, init_params(flat, 0))
    geometry = tmp_path / "methanol.npz"
    np.savez(geometry, Z=methanol.atomic_numbers, R=methanol.positions)
    out = tmp_path / "check.json"
    assert main([str(checkpoint), "--geometry", str(geometry), "--quick", "--only", "forces", "smoothness",
                 "stability", "--json", str(out)]) == 0
    assert "overall: WARN" in capsys.readouterr().out
    checks = json.loads(out.read_text())["checks"]
    warned = {c["id"] for c in checks if c["status"] == "warn"}
    assert warned == {"forces.fd.total", "smoothness.C-H", "smoothness.O-C", "smoothness.O-H",
                      "stability.curvature"}
    assert {c["status"] for c in checks} == {"pass", "warn"}
    total = next(c for c in checks if c["id"] == "forces.fd.total")
    assert total["details"]["zero_forces"] and "the energy does not depend on the geometry" in total["message"]
    assert "untrained or broken model" in total["message"]
    assert "ratio n/a" in total["message"] and "not judged" not in total["message"]  # no slope to call unjudged


def test_distances_outside_the_training_records_warn_by_their_largest_excursion(model, params, methanol):
    """The record is methanol's own geometry: scaled about its centroid by s, every nearest neighbour is s times its
    own (the atom that set its element's longest lies s − 1 beyond it) and every pair s times (the shortest pair of
    an element pair 1 − s within it)."""
    domain = DistanceDomain.of_frames(methanol.atomic_numbers[None], methanol.positions[None],
                                      [methanol.num_atoms], 5.0)
    centroid = methanol.positions.mean(axis=0)
    scaled = [dataclasses.replace(methanol, positions=centroid + s * (methanol.positions - centroid))
              for s in (1.0, 1.05, 1.3, 0.8)]
    report = check_model(model, params, scaled, groups=(), training_record=TrainingRecord(distances=domain))
    rows = [report.by_id("inputs.trained_distances", k) for k in range(4)]
    assert [r.status for r in rows] == ["pass", "pass", "warn", "warn"]
    assert [r.value for r in rows] == pytest.approx([0.0, 0.05, 0.3, 0.2], abs=1e-12)
    assert rows[0].unit == "relative" and rows[2].warn_above == DOMAIN_MARGIN
    assert "within 10% of those of the training data" in rows[1].message
    assert re.search(r"atom \d \(\w\) has its nearest neighbour .* Å away; the training data's longest", rows[2].message)
    assert re.search(r"atoms \d \(\w\) and \d \(\w\) are .* Å apart; the training data's shortest", rows[3].message)
    elements_only = check_model(model, params, scaled, groups=(), training_record=TrainingRecord(elements=(1, 6, 8)))
    assert {c.id for c in elements_only.checks} == {"inputs.trained_elements"}


def test_a_recorded_dipole_r2_is_one_row_for_a_charge_model(model, params, methanol):
    """One row for the model, however many structures; it warns below 0.8 as the spectra do, and is absent without
    a record or for a model without charges."""
    low = check_model(model, params, [methanol, methanol], groups=(), dipole_r2=("test", 0.42))
    assert [(c.id, c.structure, c.status) for c in low.checks] == [("inputs.dipole_surface", 0, "warn")]
    assert low.checks[0].value == pytest.approx(0.58) and low.checks[0].unit == "1 − R²"
    assert low.checks[0].message == unreliable_ir_message("test", 0.42)
    high = check_model(model, params, [methanol], groups=(), dipole_r2=("valid", 0.95)).by_id("inputs.dipole_surface")
    assert high.status == "pass" and high.value == pytest.approx(0.05)
    assert high.message.startswith("dipole R² in the molecular frame 0.95 on the valid split")
    assert check_model(model, params, [methanol], groups=()).checks == []
    uncharged = model.clone(charges=False)  # no group runs: its parameters are never evaluated
    assert check_model(uncharged, params, [methanol], groups=(), dipole_r2=("test", 0.42)).checks == []


def test_cli_reports_the_recorded_distances_and_dipole_r2(model, params, methanol, tmp_path, capsys):
    """The formaldehyde model whose IR intensities were scrambled passed check: the CLI now reads both records, also
    from a re-saved checkpoint's source_metadata."""
    domain = DistanceDomain.of_frames(methanol.atomic_numbers[None], methanol.positions[None],
                                      [methanol.num_atoms], 5.0)
    record = {DIPOLE_SURFACE_KEY: {"valid": {"r2": 0.9}, "test": {"r2": 0.31}},
              TRAINED_DISTANCES_KEY: domain.to_metadata()}
    checkpoint = save_checkpoint(tmp_path / "ckpt", model, params, {"source_metadata": record})
    geometry = tmp_path / "stretched.npz"
    np.savez(geometry, Z=methanol.atomic_numbers, R=1.3 * methanol.positions)
    out = tmp_path / "check.json"
    assert main([str(checkpoint), "--geometry", str(geometry), "--quick", "--only", "references",
                 "--json", str(out)]) == 0
    assert "overall: WARN" in capsys.readouterr().out
    rows = {c["id"]: c for c in json.loads(out.read_text())["checks"]}
    assert rows["inputs.dipole_surface"]["status"] == "warn" and "0.31 on the test split" in rows[
        "inputs.dipole_surface"]["message"]
    assert rows["inputs.trained_distances"]["status"] == "warn"


# -- the verdicts' formulas, on numbers written out here ------------------------------------------------------------


@pytest.mark.parametrize("energy_shift, force_shift", [(0.0, 0.3), (0.3, 0.0), (2e-4, -5e-7)])
def test_invariance_is_judged_on_the_larger_of_the_energy_and_force_changes(energy_shift, force_shift):
    """value = max(|ΔE|, max_i,a |ΔF_ia|): a change of the forces alone (one component) or of the energy alone fails
    as much as the larger of the two says."""
    from physnetjax.check.invariance import _difference

    forces = np.arange(12.0).reshape(4, 3) / 10
    moved = forces.copy()
    moved[2, 1] += force_shift
    moved[0, 0] += force_shift / 10
    result = _difference("rotation", 0, (1.5, forces), (1.5 + energy_shift, moved), Thresholds(), "a rotation")
    assert result.value == pytest.approx(max(abs(energy_shift), abs(force_shift)), rel=1e-9)
    assert result.details == pytest.approx({"energy_difference_eV": abs(energy_shift),
                                            "max_force_difference_eV_per_A": abs(force_shift)}, rel=1e-9)
    assert result.status == ("fail" if max(abs(energy_shift), abs(force_shift)) > 1e-3 else "warn")


def test_force_comparison_metrics_of_written_out_arrays():
    """compare_forces on 2 atoms: max and rms of |F − F_FD| over the 6 components, the relative error over
    max(1 eV/Å, max|F_FD|), the least-squares slope ⟨F, F_FD⟩ / ⟨F_FD, F_FD⟩ and its sign."""
    from physnetjax.check.forces import compare_forces

    numerical = np.array([[0.4, -0.2, 0.0], [0.1, 0.0, -0.3]])
    analytic = numerical + np.array([[0.01, 0.0, -0.02], [0.0, 0.03, 0.0]])
    metrics = compare_forces(analytic, numerical)
    assert metrics["max_abs_error"] == pytest.approx(0.03, rel=1e-12)
    assert metrics["rms_error"] == pytest.approx(np.sqrt((0.01**2 + 0.02**2 + 0.03**2) / 6), rel=1e-12)
    assert metrics["relative_error"] == pytest.approx(0.03, rel=1e-12)  # max|F_FD| = 0.4 < 1 eV/Å
    assert metrics["max_abs_numerical"] == pytest.approx(0.4, rel=1e-12)
    dot = 0.41 * 0.4 + 0.2 * 0.2 + 0.1 * 0.1 + 0.3 * 0.3  # the zero components of F_FD add nothing
    assert metrics["ratio"] == pytest.approx(dot / (0.4**2 + 0.2**2 + 0.1**2 + 0.3**2), rel=1e-12)
    assert metrics["sign"] == "same"
    large = compare_forces(-3.0 * numerical - 0.5, 5.0 * numerical)  # max|F_FD| = 2 eV/Å scales the error
    assert large["relative_error"] == pytest.approx(np.abs(-8.0 * numerical - 0.5).max() / 2.0, rel=1e-12)
    assert large["sign"] == "flipped"
    assert compare_forces(numerical, np.zeros((2, 3)))["ratio"] is None


def test_bond_scan_distances_start_below_the_smallest_cutoff_but_not_below_six_tenths_of_the_bond():
    """From max(0.6 d₀, min(d₀, smallest cutoff − 0.25 Å)) by the step, to the largest cutoff + the margin."""
    from physnetjax.check.smoothness import scan_distances

    settings = CheckSettings(scan_step=0.02, scan_margin=0.5)
    distances = scan_distances(1.0, {"a": 4.0, "b": 1.0}, settings)
    np.testing.assert_allclose(distances, 0.75 + 0.02 * np.arange(188), rtol=1e-12)  # the last grid point ≤ 4.5
    floored = scan_distances(3.0, {"a": 1.5}, settings)  # 1.5 − 0.25 = 1.25 Å is below 0.6 × 3 Å
    np.testing.assert_allclose(floored, 1.8 + 0.02 * np.arange(11), rtol=1e-12)
