"""The D3(BJ) term inside PhysNet (physnetjax/model_dispersion.py): outputs, parameters, checkpoints, tools."""

from __future__ import annotations

import pathlib
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from ase import Atoms
from ase.build import molecule

from physnetjax import PhysNet, PhysNetCalculator, init_params, load_checkpoint, predict, save_checkpoint
from physnetjax import with_dispersion
from physnetjax.check import CheckSettings, Structure, check_model
from physnetjax.errors import PhysNetInputWarning
from physnetjax.neighbors import model_pair_cutoff
from physnetjax.physics.dispersion import d3_bj_parameters
from physnetjax.units import BOHR, HARTREE

SMALL = dict(features=8, max_degree=1, num_iterations=1, num_basis_functions=4, cutoff=4.0, charges=False,
             zbl=False, param_dtype=jnp.float64)


@pytest.fixture(scope="module")
def d3_model():
    model = PhysNet(dispersion="d3bj", dispersion_functional="b3lyp", **SMALL)
    return model, init_params(model)


def _dftd3(atoms, functional):
    interface = pytest.importorskip("dftd3.interface")
    model = interface.DispersionModel(atoms.numbers, atoms.positions / BOHR)
    result = model.get_dispersion(interface.RationalDampingParam(method=functional, atm=False), grad=True)
    return float(result["energy"]) * HARTREE, -np.asarray(result["gradient"]) * HARTREE / BOHR


def test_fresh_model_energy_is_exactly_d3(d3_model):
    model, params = d3_model
    atoms = molecule("CH3CH2OH")
    out = predict(model, params, atoms.numbers, atoms.positions)
    energy, forces = _dftd3(atoms, "b3lyp")
    # The network head starts at zero and the element biases at 0: E = E_D3.
    assert out["energy"] == out["dispersion"]
    assert abs(out["energy"] - energy) < 1e-10
    np.testing.assert_allclose(out["forces"], forces, rtol=0, atol=1e-10)
    assert model_pair_cutoff(model) == model.dispersion_cutoff


def test_dispersion_reaches_beyond_the_message_passing_cutoff(d3_model):
    model, params = d3_model
    positions = np.array([[0.0, 0.0, 0.0], [9.0, 0.0, 0.0]])  # 9 Å > cutoff 4 Å, < 0.8 × 15 Å
    out = predict(model, params, [18, 18], positions)
    energy, _ = _dftd3(Atoms("Ar2", positions=positions), "b3lyp")
    assert out["dispersion"] < 0.0 and abs(out["dispersion"] - energy) < 1e-12


def test_inference_only_dispersion_adds_exactly_d3():
    plain = PhysNet(**SMALL)
    params = init_params(plain, seed=3)
    params = jax.tree_util.tree_map(lambda p: p + 0.01, params)  # a non-zero network energy
    atoms = molecule("CH3CH2OH")
    base = predict(plain, params, atoms.numbers, atoms.positions)
    assert base["dispersion"] == 0.0 and base["energy"] != 0.0
    corrected_model = with_dispersion(plain, "b3lyp")
    assert corrected_model == PhysNet(dispersion="d3bj", dispersion_functional="b3lyp", **SMALL)  # shares compiles
    corrected = predict(corrected_model, params, atoms.numbers, atoms.positions)
    energy, forces = _dftd3(atoms, "b3lyp")
    assert corrected["energy"] - base["energy"] == pytest.approx(energy, abs=1e-10)
    np.testing.assert_allclose(corrected["forces"] - base["forces"], forces, rtol=0, atol=1e-9)
    with pytest.raises(ValueError, match="already has dispersion"):
        with_dispersion(with_dispersion(plain))


def test_trainable_damping_is_softplus_positive_and_differentiable():
    model = PhysNet(dispersion="d3bj", dispersion_trainable=True, **SMALL)
    params = init_params(model)
    raw = params["params"]["dispersion"]
    reference = d3_bj_parameters("pbe0")
    for name in ("s6", "s8", "a1", "a2"):
        assert float(jax.nn.softplus(raw[name])) == pytest.approx(getattr(reference, name), rel=1e-12)
    atoms = molecule("H2O")
    z = jnp.asarray(atoms.numbers)
    i, j = np.nonzero(~np.eye(3, dtype=bool))

    def energy(p):
        return model.apply(p, z, jnp.asarray(atoms.positions), jnp.asarray(i), jnp.asarray(j))["dispersion"][0]

    grads = jax.jit(jax.grad(energy))(params)["params"]["dispersion"]
    assert all(np.isfinite(float(grads[n])) and float(grads[n]) != 0.0 for n in ("s6", "s8", "a1", "a2"))


def test_invalid_settings_are_refused():
    atoms = (jnp.array([1, 1]), jnp.array([[0.0, 0.0, 0.0], [0.74, 0.0, 0.0]]), jnp.array([0, 1]),
             jnp.array([1, 0]))
    for kwargs, error, message in [
        (dict(dispersion="d4"), ValueError, "dispersion must be None or one of"),
        (dict(dispersion="d3bj", dispersion_functional="nonsense"), ValueError, "no D3\\(BJ\\) parameters"),
        (dict(dispersion="d3bj", dispersion_cutoff=-1.0), ValueError, "dispersion_cutoff must be"),
        (dict(dispersion="d3bj", dispersion_three_body=True), ValueError, "needs a triplet list"),
    ]:
        with pytest.raises(error, match=message):
            PhysNet(**SMALL, **kwargs).init(jax.random.PRNGKey(0), *atoms)


def test_elements_beyond_the_d3_data_are_refused_by_every_entry_point(d3_model, tmp_path):
    """D3's tables end at Lr (Z = 103; at Pu, 94, before the revised reference set) and are read clamped: Am (95)
    and Og (118) got exactly Pu's dispersion. Only predict and the calculator refused them; check passed and MD
    ran. The model (max_atomic_number 118) now evaluates Z = 1..103 everywhere."""
    from physnetjax.errors import PhysNetInputError
    from physnetjax.md.driver import simulate
    from physnetjax.neighbors import apply_batch, batch_molecules

    model, params = d3_model
    assert model.max_atomic_number == 118 and model.supported_max_atomic_number == 103
    assert model.clone(dispersion=None).supported_max_atomic_number == 118
    z, r = np.array([104, 8, 8]), np.array([[0.0, 0.0, 0.0], [0.0, 0.0, 1.8], [0.0, 0.0, -1.8]])
    outside = r"element\(s\) Rf \(Z=104\) at atom\(s\) 0 are outside this model's range Z = 1\.\.103 \(Lr \(Z=103\)\)"
    with pytest.raises(PhysNetInputError, match=outside):
        predict(model, params, z, r)
    with pytest.raises(PhysNetInputError, match=outside):
        Atoms(numbers=z, positions=r, calculator=PhysNetCalculator(model, params)).get_potential_energy()
    with pytest.raises(PhysNetInputError, match=outside):
        check_model(model, params, [Structure(z, r)], settings=CheckSettings())
    with pytest.raises(PhysNetInputError, match=outside):
        simulate(model, params, Atoms(numbers=z, positions=r), steps=2, save_every=1, out=str(tmp_path / "md.extxyz"))
    batch = batch_molecules([z], [r], cutoff=model_pair_cutoff(model))
    with pytest.raises(PhysNetInputError, match=r"atomic number\(s\) \[104\] beyond this model's range Z = 1\.\.103: "
                                                r"its D3 dispersion's reference data end there"):
        apply_batch(model, params, batch)
    assert np.isfinite(predict(model, params, [103, 8, 8], r)["energy"])


def test_a_dispersion_cutoff_far_below_what_d3_needs_warns_with_its_cost():
    """dispersion_cutoff=0.001 gave a dispersion energy of exactly 0 without a word."""
    with pytest.warns(PhysNetInputWarning, match=r"the D3 dispersion cutoff of 0.001 Å is below 7.5 Å, half the "
                                                 r"default 15 Å \(the reference s-dftd3 sums D3 pairs to 31.75 Å\)"
                                                 r".* even within one molecule .*; use a dispersion cutoff >= 7.5 Å"):
        PhysNet(**SMALL, dispersion="d3bj", dispersion_cutoff=0.001).check_configuration()
    with pytest.warns(PhysNetInputWarning, match=r"the D3 dispersion cutoff of 5 Å .* \(switched off from 4 Å\), in "
                                                 r"liquid ethanol .* leaves out 4 / 10 / 21 % of the dispersion"):
        with_dispersion(PhysNet(**SMALL), cutoff=5.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error", PhysNetInputWarning)
        for cutoff in (7.5, 15.0):
            PhysNet(**SMALL, dispersion="d3bj", dispersion_cutoff=cutoff).check_configuration()
        PhysNet(**SMALL, dispersion_cutoff=1.0).check_configuration()  # no dispersion term: nothing is cut


def test_functional_names_and_cutoffs_that_are_not_what_they_seem_are_refused_clearly():
    """On main a functional that is not a string (None from a config, a number) gave AttributeError: 'NoneType'
    object has no attribute 'lower'; ' pbe0' was unknown; an infinite cutoff (or True, read as 1 Å) was taken."""
    for functional in (None, 5):
        with pytest.raises(ValueError, match=f"functional must be a name such as 'pbe0', received {functional}"):
            with_dispersion(PhysNet(**SMALL), functional=functional)
    assert d3_bj_parameters(" PBE0 ") == d3_bj_parameters("pbe0")
    with pytest.raises(ValueError, match=r"functional 'b3-lyp' \(did you mean 'b3lyp'"):
        d3_bj_parameters("b3-lyp")
    for cutoff in (float("inf"), True):
        with pytest.raises(ValueError, match=f"dispersion_cutoff must be a positive, finite distance in Å, "
                                             f"received {cutoff}"):
            with_dispersion(PhysNet(**SMALL), cutoff=cutoff)


def test_checkpoint_records_dispersion_and_old_configs_load_without(d3_model, tmp_path):
    model, params = d3_model
    save_checkpoint(tmp_path / "ckpt", model, params)
    loaded, loaded_params = load_checkpoint(tmp_path / "ckpt")
    assert (loaded.dispersion, loaded.dispersion_functional) == ("d3bj", "b3lyp")
    config = model.config()
    old = {k: v for k, v in config.items() if not k.startswith("dispersion")}
    assert PhysNet.from_config(old).dispersion is None
    legacy, _ = load_checkpoint(pathlib.Path(__file__).parent / "data" / "legacy" / "A")
    assert legacy.dispersion is None


def test_calculator_reports_the_dispersion_energy(d3_model):
    model, params = d3_model
    atoms = molecule("CH3CH2OH")
    atoms.calc = PhysNetCalculator(model, params, dtype="float64")
    energy = atoms.get_potential_energy()
    assert atoms.calc.results["dispersion_energy"] == pytest.approx(energy, abs=1e-12)
    assert energy == pytest.approx(_dftd3(atoms, "b3lyp")[0], abs=1e-10)


def test_check_covers_the_dispersion_term(d3_model):
    model, params = d3_model
    atoms = molecule("CH3OH")
    report = check_model(model, params, [Structure(atoms.numbers, atoms.positions, 0.0, "methanol")],
                         groups=("forces",), settings=CheckSettings.quick())
    term = report.by_id("forces.fd.dispersion")
    assert term.status == "pass"
    assert term.details["weight_in_total"] == pytest.approx(1.0, abs=1e-4)


def test_trainer_flags_build_a_dispersion_model():
    from physnetjax.train.cli import build_parser
    from physnetjax.train.config import TrainConfig
    from physnetjax.train.loop import build_model

    args = vars(build_parser().parse_args(["--dispersion", "d3bj", "--dispersion-functional", "b3lyp",
                                           "--dispersion-cutoff", "12", "--dispersion-trainable"]))
    model = build_model(TrainConfig(**args), 9)
    assert (model.dispersion, model.dispersion_functional, model.dispersion_cutoff, model.dispersion_trainable) == (
        "d3bj", "b3lyp", 12.0, True)
    assert build_model(TrainConfig(), 9).dispersion is None
    with pytest.raises(ValueError, match="no D3\\(BJ\\) parameters"):
        TrainConfig(dispersion="d3bj", dispersion_functional="nonsense")
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--dispersion", "d4"])


@pytest.mark.slow
@pytest.mark.filterwarnings(
    r"ignore:the D3 dispersion cutoff of 7 Å is below 7\.5 Å:physnetjax.errors.PhysNetInputWarning")
def test_periodic_stress_and_forces_of_the_dispersion_term_match_finite_differences():
    from physnetjax import predict_periodic

    model = PhysNet(dispersion="d3bj", dispersion_cutoff=7.0, **SMALL)
    params = init_params(model)
    cell = np.array([[3.1, 0.2, 0.0], [0.1, 2.9, 0.3], [0.0, 0.2, 3.3]])
    positions = np.array([[0.1, 0.0, 0.2], [1.5, 1.6, 1.4]])
    numbers = [6, 8]
    out = predict_periodic(model, params, numbers, positions, cell)
    assert out["energy"] == out["dispersion"] and out["dispersion"] < 0.0
    h = 1e-5
    fd_stress = np.zeros((3, 3))
    for a in range(3):
        for c in range(3):
            energies = []
            for sign in (1.0, -1.0):
                deformation = np.eye(3)
                deformation[a, c] += sign * h
                energies.append(predict_periodic(model, params, numbers, positions @ deformation,
                                                 cell @ deformation)["energy"])
            fd_stress[a, c] = (energies[0] - energies[1]) / (2 * h) / abs(np.linalg.det(cell))
    np.testing.assert_allclose(out["stress"], fd_stress, rtol=1e-6, atol=1e-10)
    shifted = positions.copy()
    shifted[1, 0] += h
    back = positions.copy()
    back[1, 0] -= h
    fd_force = -(predict_periodic(model, params, numbers, shifted, cell)["energy"]
                 - predict_periodic(model, params, numbers, back, cell)["energy"]) / (2 * h)
    assert out["forces"][1, 0] == pytest.approx(fd_force, rel=1e-6, abs=1e-10)
