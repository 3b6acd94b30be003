"""The PhysNet energy/force path: finite differences, invariances, padding, smoothness.

All physics checks run in float64 (x64 is enabled in conftest). Molecules are padded to
one common shape so that each model configuration compiles once.
"""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from physnetjax import (EF, PhysNet, apply_batch, batch_molecules, init_params, load_checkpoint, predict,
                        predict_periodic, save_checkpoint)
from physnetjax.neighbors import model_pair_cutoff

from conftest import cast_params, perturbed_params

MOLECULES = ("ethanol", "co2", "base_a")
PAD = dict(num_atoms=18, num_edges=18 * 17, num_pairs=18 * 17)
FD_STEP = 1e-4  # Angstrom; central-difference truncation ~h^2 F''' and rounding ~1e-16 E/h


def small_model(charges, zbl, **kwargs):
    settings = dict(features=8, max_degree=2, num_iterations=2, n_res=1, num_basis_functions=8, cutoff=4.0,
                    zbl_cutoff=2.5, param_dtype=jnp.float64)
    return PhysNet(charges=charges, zbl=zbl, **{**settings, **kwargs})


class Setup:
    """A model, perturbed float64 params, and one jitted apply function for padded batches."""

    def __init__(self, model, seed=0):
        self.model = model
        self.params = perturbed_params(init_params(model, seed), scale=0.3, seed=seed + 1)
        self.apply = jax.jit(lambda p, b: apply_batch(model, p, b))

    def batch(self, z, r, total_charge=0.0, **pad):
        return batch_molecules([z], [r], self.model.cutoff, total_charges=[total_charge],
                               pair_cutoff=model_pair_cutoff(self.model), dtype=np.float64,
                               **(pad or PAD))

    def run(self, z, r, total_charge=0.0, **pad):
        return self.apply(self.params, self.batch(z, r, total_charge, **pad))

    def energy(self, z, r, total_charge=0.0):
        return float(self.run(z, r, total_charge)["energy"][0])


_SETUPS = {}


def setup_for(charges, zbl, **kwargs):
    key = (charges, zbl, tuple(sorted(kwargs.items())))
    if key not in _SETUPS:
        _SETUPS[key] = Setup(small_model(charges, zbl, **kwargs))
    return _SETUPS[key]


def central_fd_forces(energy, r, h=FD_STEP):
    forces = np.zeros_like(r)
    for i, k in itertools.product(range(r.shape[0]), range(3)):
        plus, minus = r.copy(), r.copy()
        plus[i, k] += h
        minus[i, k] -= h
        forces[i, k] = -(energy(plus) - energy(minus)) / (2 * h)
    return forces


def fd_error(setup, z, r, forces, total_charge=0.0):
    """max |F - F_FD| relative to the force scale max(1, max |F_FD|)."""
    fd = central_fd_forces(lambda x: setup.energy(z, x, total_charge), r)
    return np.max(np.abs(forces - fd)) / max(1.0, np.max(np.abs(fd)))


@pytest.mark.parametrize("molecule", MOLECULES)
@pytest.mark.parametrize("charges,zbl", list(itertools.product([False, True], [False, True])))
def test_forces_equal_central_finite_differences(molecules, charges, zbl, molecule):
    setup = setup_for(charges, zbl)
    z, r = molecules[molecule]
    out = setup.run(z, r)
    forces = np.asarray(out["forces"][: len(z)])
    assert np.max(np.abs(forces)) > 1e-2  # non-trivial forces
    if zbl:
        assert float(out["repulsion"][0]) > 0.0
    if charges:
        assert abs(float(out["electrostatics"][0])) > 1e-4
    assert fd_error(setup, z, r, forces) <= 1e-6


@pytest.mark.parametrize("total_charge", [-1.0, 1.0])
def test_forces_through_charge_correction(molecules, total_charge):
    setup = setup_for(True, False)
    z, r = molecules["ethanol"]
    out = setup.run(z, r, total_charge)
    assert float(out["sum_charges"][0]) == pytest.approx(total_charge, abs=1e-12)
    forces = np.asarray(out["forces"][: len(z)])
    assert fd_error(setup, z, r, forces, total_charge) <= 1e-6


def test_forces_with_shifted_long_range_coulomb(molecules):
    setup = setup_for(True, True, coulomb_lr_cutoff=5.0)
    z, r = molecules["base_a"]
    forces = np.asarray(setup.run(z, r)["forces"][: len(z)])
    assert fd_error(setup, z, r, forces) <= 1e-6


@pytest.mark.parametrize("mutant", ["sign_flipped", "repulsion_doubled", "electrostatics_doubled"])
def test_fd_check_catches_wrong_forces(molecules, mutant):
    """The FD criterion fails for forces with a flipped sign or one pair term counted twice."""
    setup = setup_for(True, True)
    z, r = molecules["ethanol"]
    batch = setup.batch(z, r)
    forces = np.asarray(setup.apply(setup.params, batch)["forces"][: len(z)])
    if mutant == "sign_flipped":
        wrong = -forces
    else:
        key = "repulsion" if mutant == "repulsion_doubled" else "electrostatics"
        term = jax.grad(lambda pos: setup.apply(setup.params, batch.replace(positions=pos))[key][0])
        wrong = forces - np.asarray(term(jnp.asarray(batch.positions)))[: len(z)]
    assert fd_error(setup, z, r, forces) <= 1e-6
    assert fd_error(setup, z, r, wrong) > 1e-3


def random_rotation(seed, reflect):
    q, _ = np.linalg.qr(np.random.default_rng(seed).normal(size=(3, 3)))
    if (np.linalg.det(q) < 0) != reflect:
        q[:, 0] *= -1
    return q


def assert_forces_equal_finite_differences(setup, z, r):
    """Non-trivial forces within 1e-6 (relative to the force scale) of central finite differences."""
    forces = np.asarray(setup.run(z, r)["forces"][: len(z)])
    assert np.max(np.abs(forces)) > 1e-2
    assert fd_error(setup, z, r, forces) <= 1e-6


def assert_checkpoint_round_trip(setup, directory, z, r):
    """Save and load ``setup``'s model: the same model, bit-identical energies and forces; returns the loaded model."""
    model, params = load_checkpoint(save_checkpoint(directory, setup.model, setup.params, {}))
    assert model == setup.model
    before, after = setup.run(z, r), setup.apply(params, setup.batch(z, r))
    np.testing.assert_array_equal(np.asarray(after["energy"]), np.asarray(before["energy"]))
    np.testing.assert_array_equal(np.asarray(after["forces"]), np.asarray(before["forces"]))
    return model


def assert_rotation_and_permutation_invariant(setup, z, r, seed, reflect):
    """E invariant, F rotated and permuted, charges permuted under a random rotation (reflection) and relabelling."""
    rot = random_rotation(seed, reflect)
    perm = np.random.default_rng(seed).permutation(len(z))
    a, b = setup.run(z, r), setup.run(z[perm], (r @ rot.T)[perm])
    assert float(b["energy"][0]) == pytest.approx(float(a["energy"][0]), rel=1e-10, abs=1e-10)
    np.testing.assert_allclose(np.asarray(b["forces"][: len(z)]),
                               (np.asarray(a["forces"][: len(z)]) @ rot.T)[perm], atol=1e-9)
    if setup.model.charges:
        np.testing.assert_allclose(np.asarray(b["charges"][: len(z)]), np.asarray(a["charges"][: len(z)])[perm],
                                   atol=1e-12)


@pytest.mark.parametrize("reflect", [False, True])
def test_rotation_and_reflection_invariance(molecules, reflect):
    setup = setup_for(True, True)
    z, r = molecules["base_a"]
    rot = random_rotation(3, reflect)
    a, b = setup.run(z, r), setup.run(z, r @ rot.T)
    assert float(b["energy"][0]) == pytest.approx(float(a["energy"][0]), rel=1e-10, abs=1e-10)
    np.testing.assert_allclose(np.asarray(b["forces"]), np.asarray(a["forces"]) @ rot.T, atol=1e-9)


@pytest.mark.parametrize("offset", [np.array([0.3, -1.2, 2.0]), np.array([1000.0, -1000.0, 1000.0])])
def test_translation_invariance(molecules, offset):
    setup = setup_for(True, True)
    z, r = molecules["base_a"]
    a, b = setup.run(z, r), setup.run(z, r + offset)
    # 1000 Angstrom offsets lose ~1e-13 Angstrom of relative position in float64.
    assert float(b["energy"][0]) == pytest.approx(float(a["energy"][0]), abs=1e-8)
    np.testing.assert_allclose(np.asarray(b["forces"]), np.asarray(a["forces"]), atol=1e-8)


def test_permutation_invariance(molecules):
    setup = setup_for(True, True)
    z, r = molecules["base_a"]
    perm = np.random.default_rng(0).permutation(len(z))
    a, b = setup.run(z, r), setup.run(z[perm], r[perm])
    assert float(b["energy"][0]) == pytest.approx(float(a["energy"][0]), rel=1e-12)
    np.testing.assert_allclose(np.asarray(b["forces"][: len(z)]), np.asarray(a["forces"][: len(z)])[perm], atol=1e-10)
    np.testing.assert_allclose(np.asarray(b["charges"][: len(z)]), np.asarray(a["charges"][: len(z)])[perm], atol=1e-12)


@pytest.mark.parametrize("charges,zbl", [(False, False), (True, True)])
def test_net_force_and_torque_vanish(molecules, charges, zbl):
    setup = setup_for(charges, zbl)
    z, r = molecules["base_a"]
    forces = np.asarray(setup.run(z, r)["forces"][: len(z)])
    scale = np.max(np.abs(forces))
    np.testing.assert_allclose(forces.sum(axis=0), 0.0, atol=1e-11 * scale * len(z))
    torque = np.cross(r - r.mean(axis=0), forces).sum(axis=0)
    np.testing.assert_allclose(torque, 0.0, atol=1e-10 * scale * len(z))


def test_padding_and_batching_do_not_change_results(molecules):
    setup = setup_for(True, True)
    z, r = molecules["ethanol"]
    alone = setup.apply(setup.params, batch_molecules([z], [r], 4.0, pair_cutoff=None, dtype=np.float64))
    padded = setup.run(z, r)  # padded to 18 atom slots with ghost atoms at the origin
    zo, ro = molecules["base_a"]
    zc, rc = molecules["co2"]
    # Put the other molecules right on top of ethanol: only the graph separates them.
    batch = batch_molecules([zo, z, zc], [ro, r, rc], 4.0, pair_cutoff=None, dtype=np.float64,
                            num_atoms=40, num_edges=500, num_pairs=700, num_molecules=4)
    together = setup.apply(setup.params, batch)
    n = len(z)
    sl = slice(len(zo), len(zo) + n)
    for other, atoms in ((padded, slice(0, n)), (together, sl)):
        k = 0 if other is padded else 1
        assert float(other["energy"][k]) == pytest.approx(float(alone["energy"][0]), rel=1e-10, abs=1e-10)
        np.testing.assert_allclose(np.asarray(other["forces"][atoms]), np.asarray(alone["forces"]), atol=1e-10)
        np.testing.assert_allclose(np.asarray(other["charges"][atoms]), np.asarray(alone["charges"]), atol=1e-12)
    # Ghost atoms and padding molecule slots get exactly nothing.
    np.testing.assert_array_equal(np.asarray(padded["forces"][n:]), 0.0)
    np.testing.assert_array_equal(np.asarray(padded["charges"][n:]), 0.0)
    assert float(together["energy"][3]) == 0.0


def test_no_gradient_between_molecules_in_a_batch(molecules):
    setup = setup_for(True, True)
    z, r = molecules["ethanol"]
    zc, rc = molecules["co2"]
    batch = batch_molecules([z, zc], [r, rc + 0.5], 4.0, pair_cutoff=None, dtype=np.float64)
    jac = jax.jacobian(lambda pos: setup.apply(setup.params, batch.replace(positions=pos))["energy"])(
        jnp.asarray(batch.positions))
    jac = np.asarray(jac)
    n = len(z)
    assert np.all(jac[0, n:] == 0.0) and np.all(jac[1, :n] == 0.0)
    assert np.max(np.abs(jac[0, :n])) > 0 and np.max(np.abs(jac[1, n:])) > 0


def test_separated_molecules_are_additive(molecules):
    """Two molecules 50 Angstrom apart, described as one system: E = E1 + E2.

    No long-range term is used: with charges, PhysNet's total-charge correction spreads
    the total charge over the whole system, so fragments are not independent by design.
    """
    setup = setup_for(False, True)
    z1, r1 = molecules["ethanol"]
    z2, r2 = molecules["co2"]
    z = np.concatenate([z1, z2])
    r = np.concatenate([r1, r2 + np.array([50.0, 0.0, 0.0])])
    pad = dict(num_atoms=12, num_edges=132, num_pairs=132)
    e1 = float(setup.run(z1, r1, **pad)["energy"][0])
    e2 = float(setup.run(z2, r2, **pad)["energy"][0])
    e12 = float(setup.run(z, r, **pad)["energy"][0])
    assert e12 == pytest.approx(e1 + e2, rel=1e-12, abs=1e-12)


def scan_energy_forces(setup, z, r, atom, direction, distances, anchor):
    """Energy and force on ``atom`` as it is placed at given distances from ``anchor``."""
    energies, forces = [], []
    for d in distances:
        x = r.copy()
        x[atom] = r[anchor] + d * direction
        out = setup.run(z, x)
        energies.append(float(out["energy"][0]))
        forces.append(np.asarray(out["forces"][atom]))
    return np.array(energies), np.array(forces)


@pytest.mark.parametrize("where", ["mp_cutoff", "coulomb_switch", "lr_cutoff", "zbl_cutoff"])
def test_energy_and_forces_are_continuous_across_cutoffs(where):
    """An atom moved through each cutoff: E and F change by O(delta), no jump."""
    setup = setup_for(True, True, coulomb_lr_cutoff=5.0)
    radius = {"mp_cutoff": 4.0, "coulomb_switch": 2.0, "lr_cutoff": 5.0, "zbl_cutoff": 2.5}[where]
    z = np.array([8, 1, 6], dtype=np.int32)
    r = np.array([[0.0, 0.0, 0.0], [0.0, 0.96, 0.0], [0.0, 0.0, 0.0]])
    direction = np.array([1.0, 0.0, 0.0])
    delta = 1e-7
    energies, forces = scan_energy_forces(setup, z, r, 2, direction, [radius - delta, radius + delta], 0)
    assert abs(energies[1] - energies[0]) < 1e-5
    assert np.max(np.abs(forces[1] - forces[0])) < 1e-4
    # The slope across the cutoff equals the force (no kink that FD could see).
    assert -(energies[1] - energies[0]) / (2 * delta) == pytest.approx(forces.mean(axis=0)[0], abs=1e-5)


def test_float32_agrees_with_float64(molecules):
    """float32 path vs float64 on the same weights.

    float32 carries ~7 significant digits (eps = 1.2e-7). The energy is a sum of ~15
    atomic terms plus pair sums whose magnitudes are bounded by S = sum|E_i| + |E_elec|
    + |E_rep|, so the rounding error stays below ~100 eps S = 1.2e-5 S; forces are
    differences of such sums over ~1 Angstrom, so we allow 1.2e-5 of their scale too,
    with a factor 10 margin for the basis functions' transcendental functions.
    """
    setup = setup_for(True, True)
    z, r = molecules["base_a"]
    out64 = setup.run(z, r)
    params32 = cast_params(setup.params, jnp.float32)
    batch32 = batch_molecules([z], [r], 4.0, pair_cutoff=None, dtype=np.float32, **PAD)
    out32 = jax.jit(lambda p, b: apply_batch(setup.model, p, b))(params32, batch32)
    assert out32["energy"].dtype == jnp.float32 and out32["forces"].dtype == jnp.float32
    scale_e = float(jnp.sum(jnp.abs(out64["atomic_energies"])) + jnp.abs(out64["electrostatics"][0])
                    + jnp.abs(out64["repulsion"][0]))
    assert abs(float(out32["energy"][0]) - float(out64["energy"][0])) <= 1.2e-4 * scale_e
    scale_f = float(jnp.max(jnp.abs(out64["forces"])))
    np.testing.assert_allclose(np.asarray(out32["forces"]), np.asarray(out64["forces"]), atol=1.2e-4 * scale_f)


def test_legacy_call_signature_and_output_keys(molecules):
    model = EF(features=8, max_degree=1, num_iterations=2, num_basis_functions=8, cutoff=4.0,
               charges=True, natoms=9, total_charge=0, n_res=1, zbl=True, debug=False, efa=False)
    params = init_params(model)
    z, r = molecules["ethanol"]
    n = len(z)
    dst, src = np.nonzero(~np.eye(n, dtype=bool))
    out = jax.jit(model.apply)(params, jnp.asarray(z), jnp.asarray(r, jnp.float32), jnp.asarray(dst), jnp.asarray(src))
    for key in ("energy", "forces", "charges", "electrostatics", "repulsion", "dipoles", "sum_charges", "state"):
        assert key in out
    assert out["energy"].shape == (1,) and out["forces"].shape == (n, 3) and out["dipoles"].shape == (1, 3)
    ref = predict(model, params, z, r)
    assert float(out["energy"][0]) == pytest.approx(ref["energy"], rel=1e-5)


@pytest.mark.parametrize("kwargs,error,match", [
    (dict(efa=True), NotImplementedError, "efa=True"),
    (dict(n_res=-1), NotImplementedError, "n_res=-1"),
    (dict(n_res=0), ValueError, "n_res must be at least 1"),
    (dict(cutoff=-1.0), ValueError, "cutoff must be > 0 Å, received -1.0"),  # the batch builder checks it first
])
def test_unsupported_options_raise(kwargs, error, match):
    model = PhysNet(**{**dict(features=8, max_degree=1, num_iterations=1, n_res=1), **kwargs})
    with pytest.raises(error, match=match):
        init_params(model)


@pytest.mark.parametrize("kwargs,match", [
    (dict(dispersion_cutoff="15"), r"dispersion_cutoff must be a real number \(a distance in Å\), received .15."),
    (dict(cutoff=True), r"cutoff must be a real number \(a distance in Å\), received True \(bool\)"),
    (dict(features=8.5), r"features must be an integer, received 8.5 \(float\)"),
    (dict(num_iterations=True), r"num_iterations must be an integer, received True \(bool\)"),
    (dict(edge_chunk_size="64"), r"edge_chunk_size must be an integer or None, received '64' \(str\)"),
    (dict(zbl="False"), r"zbl must be True or False, received 'False' \(str\)"),
    (dict(charges=1), r"charges must be True or False, received 1 \(int\)"),
    (dict(total_charge=float("nan")), r"total_charge must be finite, received nan"),
    (dict(coulomb_lr_cutoff="10"), r"coulomb_lr_cutoff must be a real number \(a distance in Å\) or None"),
    (dict(zbl_cutoff=-1.0), r"zbl_cutoff must be larger than 0 and finite \(Å\) when given, received -1.0"),
    (dict(max_atomic_number=0), r"max_atomic_number must be at least 1, received 0"),
    (dict(dispersion_functional=3), r"dispersion_functional must be a functional's name \(str\), received 3"),
    (dict(element_energies=(0.0, "1")), r"element_energies must be None or a sequence of finite energies in eV"),
])
def test_hyperparameters_of_a_wrong_type_are_named(kwargs, match):
    """A string or bool hyperparameter gave a raw TypeError ('>' not supported ...) or was taken as a number
    (cutoff=True: 1 Å; zbl="False": on)."""
    with pytest.raises(ValueError, match=match):
        PhysNet(**{**dict(features=8, max_degree=1, num_iterations=1, n_res=1), **kwargs}).check_configuration()
    PhysNet(features=np.int64(8), cutoff=np.float32(5.0), total_charge=1, charges=np.bool_(True),
            max_atomic_number=np.int32(9)).check_configuration()  # NumPy scalars and an int charge are numbers


def test_a_long_range_coulomb_cutoff_within_the_shielded_range_is_refused_by_name():
    """A force-shifted cutoff r_lr at or below r_sr/2, where the shielded kernel has not yet become 1/r, would make
    the electrostatics jump at r_lr; it was refused only inside the first model call, as "lr_cutoff must exceed
    sr_cutoff/2" from a traced function. The model's check names its fields and the half of the cutoff in use
    (coulomb_sr_cutoff, else cutoff); without charges the setting is unused and accepted."""
    base = dict(features=8, max_degree=1, num_iterations=1, n_res=1, cutoff=5.0, charges=True)
    for settings, half in ((dict(coulomb_lr_cutoff=2.5), "2.5"), (dict(coulomb_sr_cutoff=4.0, coulomb_lr_cutoff=2.0),
                                                                  "2")):
        with pytest.raises(ValueError, match=rf"^coulomb_lr_cutoff must exceed half the short-range Coulomb cutoff "
                                             rf"\(coulomb_sr_cutoff, else cutoff\) = {half} Å, received {half}: "):
            PhysNet(**base, **settings).check_configuration()
    PhysNet(**base, coulomb_sr_cutoff=4.0, coulomb_lr_cutoff=2.001).check_configuration()
    PhysNet(**base, coulomb_lr_cutoff=2.501).check_configuration()
    PhysNet(**{**base, "charges": False}, coulomb_lr_cutoff=1.0).check_configuration()
    with pytest.raises(ValueError, match=r"^--lr must exceed half .* \(--sr, else cutoff\) = 2\.5 Å"):
        PhysNet(**base, coulomb_lr_cutoff=2.0).check_configuration({"coulomb_lr_cutoff": "--lr",
                                                                     "coulomb_sr_cutoff": "--sr"})


@pytest.mark.parametrize("z,r,match", [
    (np.array([1, 1]), np.zeros((3, 3)), r"positions must have shape \(n, 3\)"),
    (np.array([[1, 1]]), np.zeros((2, 3)), r"atomic_numbers must have shape \(n,\)"),
    (np.array([1, 0]), np.array([[0.0, 0, 0], [1, 0, 0]]), r"atomic number\(s\) 0 at atom\(s\) 1 are not elements "
                                                           r"\(Z = 1\.\.118\)"),
    (np.array([1, 119]), np.array([[0.0, 0, 0], [1, 0, 0]]), r"atomic number\(s\) 119 at atom\(s\) 1 are not elements"),
    (np.array([1, 1]), np.array([[0.0, 0, 0], [np.nan, 0, 0]]), r"NaN or Inf at atom\(s\) 1 "),
])
def test_bad_input_is_rejected(z, r, match):
    model = small_model(False, False)
    with pytest.raises(ValueError, match=match):
        predict(model, None, z, r)


@pytest.mark.parametrize("dtype", ["float16", np.int32])
def test_predict_refuses_a_dtype_other_than_float32_or_float64(dtype):
    """As PhysNetCalculator does: float16 ran silently and returned ethanol's -310.05 eV as -310.0."""
    model = small_model(False, False)
    z, r = np.array([1, 1]), np.array([[0.0, 0.0, 0.0], [0.74, 0.0, 0.0]])
    with pytest.raises(ValueError, match="dtype must be float32 or float64"):
        predict(model, None, z, r, dtype=dtype)
    with pytest.raises(ValueError, match="dtype must be float32 or float64"):
        predict_periodic(model, None, z, r, 5.0 * np.eye(3), dtype=dtype)


def test_batch_refuses_to_truncate(molecules):
    z, r = molecules["ethanol"]
    with pytest.raises(ValueError, match="refusing to truncate"):
        batch_molecules([z], [r], 4.0, num_edges=10)


def test_a_float64_parameter_model_runs_in_float32_without_jax_truncation_warnings(tmp_path):
    """A model built with param_dtype=float64 (saved, then run by MD, predict or the calculator in float32 with x64
    off) gave JAX's "Explicitly requested dtype float64 is not available" warning at every layer: 11 of them in an
    MD run. Fresh process (x64 off, as in a user's run), every UserWarning an error, float32 asked for (without it
    predict says once that the float64 model runs in float32); its energy equals the float32 model's on the same
    parameters."""
    import subprocess
    import sys

    script = """
import warnings
warnings.simplefilter("error", UserWarning)
import jax.numpy as jnp
import numpy as np
from physnetjax import PhysNet, init_params, predict
kwargs = dict(features=8, max_degree=1, num_iterations=1, num_basis_functions=4, cutoff=4.0, zbl=True)
wide, narrow = PhysNet(param_dtype=jnp.float64, **kwargs), PhysNet(**kwargs)
params = init_params(wide, 0)
z, r = np.array([8, 1, 1]), np.array([[0.0, 0.0, 0.0], [0.96, 0.0, 0.0], [-0.24, 0.93, 0.0]])
energy = predict(wide, params, z, r, dtype="float32")["energy"]
assert energy == predict(narrow, params, z, r)["energy"], energy
print("ok")
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300,
                            env={**__import__("os").environ, "JAX_ENABLE_X64": "0"})
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr[-2000:]
