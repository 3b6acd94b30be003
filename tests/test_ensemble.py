"""Ensembles: mean/spread against the members evaluated one by one, forces of the mean, predict and the
calculator, checkpoints (round trip, member-count mismatch, combining, architecture mismatch), ``check`` on an
ensemble, and MD acting on the uncertainty."""

import json
import re
import warnings
from types import SimpleNamespace

import ase
import ase.io
import jax
import numpy as np
import pytest
from ase.calculators.singlepoint import SinglePointCalculator
from conftest import DATA, perturbed_params, warnings_as_errors

from physnetjax import (
    PhysNet,
    PhysNetCalculator,
    init_params,
    jitted_apply,
    load_checkpoint,
    predict,
    predict_periodic,
    save_checkpoint,
)
from physnetjax.checkpoint import CheckpointError
from physnetjax.checkpoint import format as ckformat
from physnetjax.data import bundled_dataset_path, load_dataset
from physnetjax.data.fingerprint import file_sha256
from physnetjax.data.sanity import check_label_sanity
from physnetjax.ensemble import PhysNetEnsemble, ensemble_statistics, member_params, stack_members
from physnetjax.ensemble.__main__ import main as ensemble_main
from physnetjax.ensemble.calibrate_checkpoint import calibrate_checkpoint, check_calibration_labels
from physnetjax.ensemble.combine import combine_checkpoints, fold_element_energies
from physnetjax.errors import PhysNetInputError, PhysNetInputWarning
from physnetjax.jsonlines import read_log
from physnetjax.md.__main__ import main as md_main
from physnetjax.md.driver import simulate
from physnetjax.neighbors import apply_batch, batch_molecules, model_pair_cutoff
from physnetjax.training_record import TrainingRecord
from physnetjax.units import DEBYE, KCAL_PER_MOL

K = 3


@pytest.fixture(scope="module")
def ensemble():
    """A charged 3-member ensemble (float64) whose members differ: independent init + independent noise."""
    jax.config.update("jax_enable_x64", True)
    member = PhysNet(features=8, max_degree=1, num_iterations=1, num_basis_functions=8, cutoff=4.0,
                     max_atomic_number=9, charges=True, coulomb_lr_cutoff=8.0, n_res=1, param_dtype=np.float64)
    members = [perturbed_params(init_params(member, k), 0.1, seed=k) for k in range(K)]
    return PhysNetEnsemble(member, K), stack_members(members), members


@pytest.fixture(scope="module")
def two_molecules(molecules):
    return [molecules["methanol"], molecules["co2"]]


def member_by_member(model, members, batch):
    """Each member's PhysNet output on ``batch``, computed one at a time with PhysNet.apply."""
    return [jax.device_get(jitted_apply(model.member)(params, batch)) for params in members]


def member_force_rms(forces):
    """NumPy's per-atom force spread of (K, N, 3) member forces: sqrt of the members' mean |F_k − F̄|²."""
    return np.sqrt(np.mean(np.sum((forces - forces.mean(axis=0)) ** 2, axis=-1), axis=0))


def test_mean_and_spread_equal_numpy_over_members(ensemble, two_molecules):
    model, stacked, members = ensemble
    zs, rs = zip(*two_molecules)
    batch = batch_molecules(list(zs), list(rs), model.cutoff, total_charges=[0.0, 1.0],
                            pair_cutoff=model_pair_cutoff(model), dtype=np.float64, num_atoms=12)
    out = jax.device_get(jitted_apply(model)(stacked, batch))
    each = member_by_member(model, members, batch)
    energies = np.array([o["energy"] for o in each])           # (K, B)
    forces = np.array([o["forces"] for o in each])             # (K, N, 3)
    charges = np.array([o["charges"] for o in each])           # (K, N)
    dipoles = np.array([o["dipoles"] for o in each])           # (K, B, 3)
    np.testing.assert_allclose(out["energy"], energies.mean(axis=0), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(out["forces"], forces.mean(axis=0), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(out["charges"], charges.mean(axis=0), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(out["dipoles"], dipoles.mean(axis=0), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(out["repulsion"], np.mean([o["repulsion"] for o in each], axis=0), rtol=1e-12)
    np.testing.assert_allclose(out["energy_std"], energies.std(axis=0), rtol=1e-10)
    np.testing.assert_allclose(out["charges_std"], charges.std(axis=0), rtol=1e-10, atol=1e-14)
    force_rms = member_force_rms(forces)
    np.testing.assert_allclose(out["forces_std"], force_rms, rtol=1e-10, atol=1e-14)
    dipole_rms = np.sqrt(np.mean(np.sum((dipoles - dipoles.mean(axis=0)) ** 2, axis=-1), axis=0))
    np.testing.assert_allclose(out["dipoles_std"], dipole_rms, rtol=1e-10)
    real = np.asarray(batch.atom_mask)
    assert (out["energy_std"] > 1e-3).all() and (out["forces_std"][real] > 1e-4).all(), "members must differ"
    assert not real.all() and (out["forces_std"][~real] == 0).all(), "padded atoms have no spread"
    stacked_outputs = jax.tree_util.tree_map(lambda *x: np.stack(x), *each)
    scaled = ensemble_statistics(stacked_outputs, 2.5)
    np.testing.assert_allclose(scaled["forces_std"], 2.5 * force_rms, rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(scaled["energy_std"], 2.5 * energies.std(axis=0), rtol=1e-10)
    np.testing.assert_allclose(scaled["energy"], out["energy"], rtol=1e-12)


@pytest.mark.parametrize("backend, in_a_loop", [("cpu", True), ("gpu", False)])
def test_members_run_in_a_loop_on_the_cpu_and_side_by_side_on_an_accelerator(ensemble, two_molecules, monkeypatch,
                                                                              backend, in_a_loop):
    """lax.map on the CPU, vmap elsewhere (on an H200 1.4-1.5x against 0.9-1.05x one member); the same numbers."""
    model, stacked, members = ensemble
    zs, rs = zip(*two_molecules)
    batch = batch_molecules(list(zs), list(rs), model.cutoff, pair_cutoff=model_pair_cutoff(model),
                            dtype=np.float64)
    monkeypatch.setattr(jax, "default_backend", lambda: backend)
    program = jax.make_jaxpr(lambda p: apply_batch(model, p, batch))(stacked)
    assert any(eqn.primitive.name == "scan" for eqn in program.jaxpr.eqns) == in_a_loop
    out = jax.device_get(jax.jit(lambda p: apply_batch(model, p, batch))(stacked))
    forces = np.array([o["forces"] for o in member_by_member(model, members, batch)])
    np.testing.assert_allclose(out["forces"], forces.mean(axis=0), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(out["forces_std"], member_force_rms(forces), rtol=1e-10, atol=1e-14)


def test_energy_only_call_of_an_ensemble_has_no_force_spread(ensemble, two_molecules):
    model, stacked, _ = ensemble
    zs, rs = zip(*two_molecules)
    batch = batch_molecules(list(zs), list(rs), model.cutoff, total_charges=[0.0, 1.0],
                            pair_cutoff=model_pair_cutoff(model), dtype=np.float64)
    full = jitted_apply(model)(stacked, batch)
    energy_only = jax.jit(lambda p, b: apply_batch(model, p, b, compute_forces=False))(stacked, batch)
    assert energy_only["forces"] is None and energy_only["forces_std"] is None
    np.testing.assert_allclose(energy_only["energy"], full["energy"], rtol=1e-12)
    np.testing.assert_allclose(energy_only["energy_std"], full["energy_std"], rtol=1e-10)


def test_forces_of_the_mean_are_minus_the_gradient_of_the_mean_energy(ensemble, molecules):
    model, stacked, _ = ensemble
    z, r = molecules["methanol"]
    apply = jitted_apply(model)

    def batch_at(positions):
        return batch_molecules([z], [positions], model.cutoff, pair_cutoff=model_pair_cutoff(model),
                               dtype=np.float64)

    forces = np.asarray(apply(stacked, batch_at(r))["forces"])
    h = 1e-5
    template = batch_at(r)
    for atom, axis in ((0, 0), (1, 2), (4, 1)):
        step = np.zeros_like(r)
        step[atom, axis] = h
        plus = float(apply(stacked, template.replace(positions=r + step))["energy"][0])
        minus = float(apply(stacked, template.replace(positions=r - step))["energy"][0])
        np.testing.assert_allclose(-(plus - minus) / (2 * h), forces[atom, axis], atol=1e-7)


def test_predict_and_calculator_report_the_spreads(ensemble, molecules):
    model, stacked, members = ensemble
    z, r = molecules["methanol"]
    result = predict(model, stacked, z, r, dtype=np.float64)
    batch = batch_molecules([z], [r], model.cutoff, pair_cutoff=model_pair_cutoff(model), dtype=np.float64)
    each = member_by_member(model, members, batch)
    np.testing.assert_allclose(result["energy_std"], np.std([o["energy"][0] for o in each]), rtol=1e-10)
    forces = np.array([o["forces"] for o in each])
    np.testing.assert_allclose(result["forces_std"], member_force_rms(forces), rtol=1e-10)
    assert result["charges_std"].shape == (len(z),) and result["dipole_std"] > 0
    calc = PhysNetCalculator(model, stacked, dtype="float64", atom_bucket=1, edge_bucket=1)  # predict's shapes
    atoms = ase.Atoms(numbers=z, positions=r, calculator=calc)
    assert atoms.get_potential_energy() == pytest.approx(result["energy"], abs=1e-9)
    for key in ("energy_std", "forces_std", "charges_std", "dipole_std"):
        np.testing.assert_allclose(calc.results[key], result[key], rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(calc.get_property("forces_std", atoms), result["forces_std"], rtol=1e-9)
    single = predict(model.member, members[0], z, r, dtype=np.float64)
    assert not any(key.endswith("_std") for key in single)
    single_calc = PhysNetCalculator(model.member, members[0], dtype="float64", atom_bucket=1, edge_bucket=1)
    atoms.calc = single_calc
    atoms.get_forces()
    assert not any(key.endswith("_std") for key in single_calc.results)


def test_ensemble_checkpoint_round_trip_and_version(ensemble, tmp_path):
    model, stacked, _ = ensemble
    model = model.clone(calibration_scale=1.7)
    path = save_checkpoint(tmp_path / "ens", model, stacked, {"note": "x"})
    config = json.loads((path / "config.json").read_text(encoding="utf-8"))
    assert config["format_version"] == 2 and config["model"]["ensemble_size"] == K
    loaded, params, metadata = load_checkpoint(path, with_metadata=True)
    assert isinstance(loaded, PhysNetEnsemble) and loaded == model and loaded.calibration_scale == 1.7
    assert metadata == {"note": "x"}
    for a, b in zip(jax.tree_util.tree_leaves(stacked), jax.tree_util.tree_leaves(params)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    single_path = save_checkpoint(tmp_path / "single", model.member, member_params(stacked, 1))
    single, single_params = load_checkpoint(single_path)
    assert isinstance(single, PhysNet) and single == model.member
    assert json.loads((single_path / "config.json").read_text(encoding="utf-8"))["format_version"] == 1


def test_member_count_mismatch_is_a_clear_error(ensemble, tmp_path):
    model, stacked, _ = ensemble
    with pytest.raises(CheckpointError, match="ensemble of 4 members but the parameters hold 3"):
        save_checkpoint(tmp_path / "bad", model.clone(size=4), stacked)
    with pytest.raises(CheckpointError, match="ensemble of 3 members but the parameters are not stacked"):
        save_checkpoint(tmp_path / "bad", model, member_params(stacked, 0))
    path = save_checkpoint(tmp_path / "ens", model, stacked)
    config = json.loads((path / "config.json").read_text(encoding="utf-8"))
    config["model"]["ensemble_size"] = 4
    config["config_sha256"] = ckformat.config_checksum(config)
    (path / "config.json").write_text(json.dumps(config), encoding="utf-8")
    with pytest.raises(CheckpointError, match="ensemble of 4 members but the parameters hold 3.*ensemble_size 4"):
        load_checkpoint(path)


def test_a_member_beyond_the_ensemble_is_an_index_error(ensemble):
    """JAX arrays clamp an index beyond their ends: member 5 of 3 was member 2, member -7 member 0, without a word."""
    _, stacked, members = ensemble
    stacked = jax.tree_util.tree_map(jax.numpy.asarray, stacked)  # as load_checkpoint returns them
    for k in (3, 5, -4, -7):
        with pytest.raises(IndexError, match=f"member {k} of an ensemble of 3 members: members are 0 … 2"):
            member_params(stacked, k)
    for k, own in ((2, 2), (-1, 2), (-3, 0)):
        for x, y in zip(jax.tree_util.tree_leaves(members[own]), jax.tree_util.tree_leaves(member_params(stacked, k))):
            np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_an_ensemble_is_refused_without_two_members_a_physnet_or_a_usable_scale(ensemble):
    model, stacked, members = ensemble
    for size in (1, 2.0, True):
        with pytest.raises(ValueError, match=f"an ensemble needs size >= 2 members, received {size!r}"):
            PhysNetEnsemble(model.member, size)
    for scale in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="calibration_scale must be finite and > 0"):
            PhysNetEnsemble(model.member, 2, calibration_scale=scale)
    with pytest.raises(ValueError, match="member must be a PhysNet, received dict"):
        PhysNetEnsemble({"features": 8}, 2)
    with pytest.raises(AttributeError, match="PhysNetEnsemble has no attribute 'no_such_setting'"):
        getattr(model, "no_such_setting")
    with pytest.raises(ValueError, match="an ensemble needs at least 2 members, received 1"):
        stack_members(members[:1])
    inner = members[1]["params"]
    first = sorted(inner)[0]
    without = {"params": {k: v for k, v in inner.items() if k != first}}
    with pytest.raises(ValueError, match=f"member 1 does not have member 0's parameters: .*{first}.* missing"):
        stack_members([members[0], without])
    with pytest.raises(ValueError, match="member 1 does not have member 0's parameters: .*extra.* not in member 0"):
        stack_members([members[0], {"params": {**inner, "extra": np.zeros(2)}}])
    grown = jax.tree_util.tree_map(lambda a: np.concatenate([a, a], axis=-1) if np.ndim(a) else a, members[1])
    with pytest.raises(ValueError, match=r"member 1 does not have member 0's parameters: .* has shape \("):
        stack_members([members[0], grown])


def test_parameters_that_do_not_fit_the_model_are_named(ensemble, two_molecules):
    """An ensemble given one model's parameters failed inside JAX ('scan got values with different leading axis
    sizes'), a single model given a stack inside Flax (ScopeParamShapeError), and a 3-member ensemble evaluated a
    2-member stack without complaint (predict and the calculator)."""
    model, stacked, members = ensemble
    z, r = two_molecules[0]
    with pytest.raises(PhysNetInputError, match=r"params do not fit the model: the model is an ensemble of 3 members "
                                                r"but the parameters are not stacked"):
        predict(model, members[0], z, r)
    with pytest.raises(PhysNetInputError, match=r"params do not fit the model: params/.*: shape \(3, .*\), model "
                                                r"expects \("):
        predict(model.member, stacked, z, r)
    pair = stack_members(members[:2])
    with pytest.raises(PhysNetInputError, match=r"ensemble of 3 members but the parameters hold 2 member\(s\)"):
        predict(model, pair, z, r)
    with pytest.raises(PhysNetInputError, match=r"ensemble of 3 members but the parameters hold 2 member\(s\)"):
        PhysNetCalculator(model, pair)


def test_a_periodic_prediction_of_an_ensemble_has_no_dipole_spread(ensemble, two_molecules):
    """predict_periodic returned dipole_std of a dipole it does not return (a periodic cell has none)."""
    model, stacked, _ = ensemble
    z, r = two_molecules[0]
    out = predict_periodic(model, stacked, z, np.asarray(r) + 10.0, np.eye(3) * 20.0)
    assert "dipole" not in out and "dipole_std" not in out
    assert out["charges_std"].shape == (len(z),) and out["energy_std"] > 0


def test_a_periodic_prediction_of_an_ensemble_has_a_stress_spread(ensemble, two_molecules):
    """predict_periodic and the calculator gave an ensemble's mean stress without its spread. stress_std is the
    members' RMS Frobenius distance from the mean stress, as NumPy gives it over the members' own predictions."""
    model, stacked, members = ensemble
    z, r = two_molecules[0]
    r, cell = np.asarray(r) + 2.0, np.array([[6.0, 0.0, 0.0], [0.5, 6.5, 0.0], [0.0, 0.3, 7.0]])
    stresses = np.stack([predict_periodic(model.member, p, z, r, cell, dtype=np.float64)["stress"] for p in members])
    out = predict_periodic(model, stacked, z, r, cell, dtype=np.float64)
    expected = np.sqrt(np.mean(np.sum((stresses - stresses.mean(axis=0)) ** 2, axis=(1, 2))))
    np.testing.assert_allclose(out["stress"], stresses.mean(axis=0), rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(out["stress_std"], expected, rtol=1e-10)
    assert expected > 0
    atoms = ase.Atoms(numbers=z, positions=r, cell=cell, pbc=True)
    atoms.calc = PhysNetCalculator(model, stacked, dtype=np.float64)
    np.testing.assert_allclose(atoms.calc.get_property("stress_std", atoms), expected, rtol=1e-10)


def test_combine_single_and_ensemble_checkpoints(ensemble, tmp_path, capsys):
    model, stacked, members = ensemble
    a = save_checkpoint(tmp_path / "a", model.member, members[0],
                        {"trained_elements": [1, 6, 8], "trained_charges": [-1.0, 0.0, 1.0],
                         "trained_charge_states": {"CHO2": [-1.0, 0.0], "CH2O2": [0.0, 1.0]},
                         "trained_distances": {"cutoff": 4.0, "shortest": {"1-6": 0.95, "1-8": 0.88, "6-6": 1.4},
                                               "longest_nearest_neighbour": {"1": 1.27, "6": 1.18, "8": None},
                                               "most_neighbours": {"1": 8, "6": 12}}})
    b = save_checkpoint(tmp_path / "b", model.member, members[1],
                        {"trained_elements": [1, 6, 8, 9], "trained_charges": [0.0, 1.0],
                         "trained_charge_states": {"CHO2": [0.0], "CH4": [1.0]},
                         "trained_distances": {"cutoff": 4.0, "shortest": {"1-6": 0.97, "1-8": 0.86, "8-8": 2.2},
                                               "longest_nearest_neighbour": {"1": None, "6": 1.2, "8": 1.09},
                                               "most_neighbours": {"1": 9, "6": 10, "8": 5}}})
    whole = save_checkpoint(tmp_path / "whole", model, stacked)
    pair = combine_checkpoints([a, b], tmp_path / "pair")
    loaded, params, metadata = load_checkpoint(pair, with_metadata=True)
    assert loaded == PhysNetEnsemble(model.member, 2) and metadata["trained_elements"] == [1, 6, 8]
    assert metadata["trained_charges"] == [0.0, 1.0]  # the charge states every member was trained on
    assert metadata["trained_charge_states"] == {"CHO2": [0.0]}  # per composition likewise (CH2O2: none in common)
    assert metadata["trained_distances"] == {  # where both members were trained: the narrower bound of each
        "cutoff": 4.0, "shortest": {"1-6": 0.97, "1-8": 0.88},
        "longest_nearest_neighbour": {"1": 1.27, "6": 1.18, "8": 1.09}, "most_neighbours": {"1": 8, "6": 10}}
    assert [s["members"] for s in metadata["ensemble_sources"]] == [1, 1]
    for k in range(2):
        for x, y in zip(jax.tree_util.tree_leaves(members[k]), jax.tree_util.tree_leaves(member_params(params, k))):
            np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    fourth = jax.tree_util.tree_map(lambda x: x + 0.01, members[0])  # a member not already in `whole`
    c = save_checkpoint(tmp_path / "c", model.member, fourth, {"trained_elements": [1, 6, 8]})
    assert ensemble_main(["combine", str(whole), str(c), "--out", str(tmp_path / "four")]) == 0
    assert "ensemble of 4 members" in capsys.readouterr().out
    four, params4, metadata4 = load_checkpoint(tmp_path / "four", with_metadata=True)
    assert four.size == 4 and "trained_elements" not in metadata4  # one source has no record
    assert "trained_charges" not in metadata4 and "trained_charge_states" not in metadata4
    assert "trained_distances" not in metadata4
    np.testing.assert_array_equal(np.asarray(member_params(params4, 3)["params"]["Embed_0"]["embedding"]),
                                  np.asarray(fourth["params"]["Embed_0"]["embedding"]))
    assert ensemble_main(["combine", str(a), str(b), "--out", str(tmp_path / "four")]) == 3
    assert "exists" in capsys.readouterr().err
    for scale in ("-1", "nan", "0"):  # named as the option (it said calibration_scale), before anything is read
        assert ensemble_main(["combine", "missing_a", "missing_b", "--out", str(tmp_path / "x"),
                              "--calibration-scale", scale]) == 2
        assert capsys.readouterr().err == (f"python -m physnetjax.ensemble: error: --calibration-scale must be "
                                           f"finite and > 0, received {float(scale)}\n")


def test_combining_a_calibrated_ensemble_says_its_calibration_is_dropped(ensemble, tmp_path):
    """A calibrated ensemble (scale 1.48) combined with one more member came out with scale 1 without a word."""
    model, stacked, members = ensemble
    calibrated = save_checkpoint(tmp_path / "calibrated", model.clone(calibration_scale=1.48), stacked)
    extra = save_checkpoint(tmp_path / "extra", model.member, jax.tree_util.tree_map(lambda x: x + 0.01, members[0]))
    with pytest.warns(PhysNetInputWarning, match=r"calibrated was calibrated \(scale 1\.48\); the combined "
                                                 r"ensemble has other members.*written with scale 1\. Calibrate it"):
        combine_checkpoints([calibrated, extra], tmp_path / "four")
    assert load_checkpoint(tmp_path / "four")[0].calibration_scale == 1.0
    with warnings_as_errors():
        combine_checkpoints([calibrated, extra], tmp_path / "rescaled", calibration_scale=1.48)
        combine_checkpoints([save_checkpoint(tmp_path / "plain", model, stacked), extra], tmp_path / "plain4")


def test_combine_creates_the_missing_folders_of_its_output_directory(ensemble, tmp_path, capsys):
    """As every CLI writing a directory (train, learn, migrate, spectra, eval --out); output files need their folder."""
    model, _, members = ensemble
    a, b = (save_checkpoint(tmp_path / name, model.member, members[k]) for k, name in enumerate("ab"))
    out = tmp_path / "new" / "folders" / "ens"
    assert ensemble_main(["combine", str(a), str(b), "--out", str(out)]) == 0
    assert load_checkpoint(out)[0] == PhysNetEnsemble(model.member, 2)


def test_combine_overwrite_of_a_directory_that_is_not_a_checkpoint_is_an_output_refusal(ensemble, tmp_path, capsys):
    """`--overwrite` onto a folder of other files is refused and left alone with exit status 3 (output refused, as
    the README's table says and migrate does); it exited 2, the status of bad input."""
    model, _, members = ensemble
    a, b = (save_checkpoint(tmp_path / name, model.member, members[k]) for k, name in enumerate("ab"))
    out = tmp_path / "results"
    out.mkdir()
    (out / "mine.txt").write_text("mine", encoding="utf-8")
    assert ensemble_main(["combine", str(a), str(b), "--out", str(out), "--overwrite"]) == 3
    assert f"refusing to overwrite {out}: it is not a physnetjax checkpoint" in capsys.readouterr().err
    assert sorted(path.name for path in out.iterdir()) == ["mine.txt"]


def test_combine_keeps_the_compositions_every_member_determined(ensemble, molecules, tmp_path):
    """Members trained on ethanol alone: their ensemble gave methanol an absolute energy with an undetermined E0
    offset without a word (combine dropped the fit records); it keeps the record when every member's training fixed
    the same compositions, none when they differ, and marks an ensemble of energy-free members as such."""
    model, _, members = ensemble
    ethanol = {"method": "prior-scaled", "elements": [1, 6, 8], "rank": 1, "degenerate": True, "basis": [[6, 2, 1]]}
    twice = {**ethanol, "basis": [[12, 4, 2]]}  # the same span written otherwise
    mixed = {**ethanol, "elements": [1, 6, 8], "rank": 2, "basis": [[6, 2, 1], [4, 1, 1]]}
    paths = {}
    for k, (name, fit) in enumerate([("a", ethanol), ("b", twice), ("c", mixed), ("d", None), ("e", None)]):
        params = jax.tree_util.tree_map(lambda x: x + 0.01 * k, members[k % 2])
        paths[name] = save_checkpoint(tmp_path / name, model.member, params, {"element_energies_fit": fit})
    same = load_checkpoint(combine_checkpoints([paths["a"], paths["b"]], tmp_path / "ab"), with_metadata=True)
    assert same[2]["element_energies_fit"] == ethanol
    with pytest.warns(PhysNetInputWarning, match=r"CH4O are not combinations of the training compositions \(C2H6O\)"):
        predict(*same[:2], *molecules["methanol"], training_record=TrainingRecord.from_metadata(same[2]))
    differ = load_checkpoint(combine_checkpoints([paths["a"], paths["c"]], tmp_path / "ac"), with_metadata=True)
    assert "element_energies_fit" not in differ[2]
    free = load_checkpoint(combine_checkpoints([paths["d"], paths["e"]], tmp_path / "de"), with_metadata=True)
    assert "element_energies_fit" in free[2] and free[2]["element_energies_fit"] is None


def test_combining_folds_different_element_energies_into_the_bias(ensemble, molecules, tmp_path):
    """Members trained with other fixed element energies E0 keep their energies: the difference (theirs minus the
    first checkpoint's, both non-zero here) goes to energy_bias."""
    model, _, members = ensemble
    z, r = molecules["methanol"]
    first = model.member.clone(element_energies=tuple(0.25 * k - 1.0 for k in range(10)))
    shifted = model.member.clone(element_energies=tuple(-0.5 * k - 3.0 for k in range(10)))
    a = save_checkpoint(tmp_path / "a", first, members[0])
    b = save_checkpoint(tmp_path / "b", shifted, members[1])
    combined, params = load_checkpoint(combine_checkpoints([a, b], tmp_path / "ab"))
    assert combined.member == first
    own = predict(shifted, members[1], z, r, dtype=np.float64)
    joined = predict(combined.member, member_params(params, 1), z, r, dtype=np.float64)
    assert joined["energy"] == pytest.approx(own["energy"], abs=1e-9)
    np.testing.assert_allclose(joined["forces"], own["forces"], atol=1e-10)
    no_bias = model.member.clone(use_energy_bias=False, element_energies=shifted.element_energies)
    without = {"params": {k: v for k, v in members[1]["params"].items() if k != "energy_bias"}}
    with pytest.raises(ValueError, match="no energy_bias to absorb"):
        fold_element_energies(no_bias, without, None, "d")


def test_combining_different_architectures_names_the_difference(ensemble, tmp_path, capsys):
    model, _, members = ensemble
    a = save_checkpoint(tmp_path / "a", model.member, members[0])
    other = save_checkpoint(tmp_path / "other", model.member.clone(cutoff=4.5), members[1])
    with pytest.raises(ValueError, match=r"architecture differs in cutoff \(4.0 vs 4.5\)"):
        combine_checkpoints([a, other], tmp_path / "x")
    assert ensemble_main(["combine", str(a), str(other), "--out", str(tmp_path / "y")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cutoff (4.0 vs 4.5)" in err[0]
    assert ensemble_main(["combine", str(a), "--out", str(tmp_path / "z")]) == 2
    assert "at least 2 members" in capsys.readouterr().err


def test_combining_a_checkpoint_with_itself_is_refused(ensemble, tmp_path, capsys):
    """Two identical members would report a spread of exactly 0 between them: the same checkpoint twice is an error."""
    model, _, members = ensemble
    a = save_checkpoint(tmp_path / "a", model.member, members[0])
    copy = save_checkpoint(tmp_path / "copy", model.member, members[0])
    with pytest.raises(ValueError, match=r"copy has the same parameters as .*a \(the same checkpoint twice\?\)"):
        combine_checkpoints([a, copy], tmp_path / "x")
    assert ensemble_main(["combine", str(a), str(a), "--out", str(tmp_path / "y")]) == 2
    assert "the same parameters" in capsys.readouterr().err and not (tmp_path / "y").exists()


def test_combine_refuses_an_output_that_is_one_of_its_inputs(ensemble, tmp_path, capsys):
    """`combine a b --out a --overwrite` replaced the single-model checkpoint a by the ensemble (exit 0), its training
    state (optimizer, EMA) lost; an --out that is an input (also through a link), holds one or lies inside one is
    refused, naming the input, before anything is read or written."""
    model, _, members = ensemble
    a = save_checkpoint(tmp_path / "a", model.member, members[0], train_state={"step": np.arange(3)})
    b = save_checkpoint(tmp_path / "b", model.member, members[1])
    (tmp_path / "link").symlink_to(a)
    for out, relation in ((a, "is"), (tmp_path / "link", "is"), (tmp_path, "holds"),
                          (a / "params" / "ens", "lies inside")):
        assert ensemble_main(["combine", str(a), str(b), "--out", str(out), "--overwrite"]) == 3
        err = capsys.readouterr().err
        assert f"refusing to write --out {out}: it {relation} the input checkpoint {a} ({a})" in err, err
    with pytest.raises(PhysNetInputError, match=r"refusing to write out .*b: it is the input checkpoint"):
        combine_checkpoints([a, b], b, overwrite=True)
    assert load_checkpoint(a)[0] == model.member and (a / "train_state").is_dir()
    assert not (a / "params" / "ens").exists() and load_checkpoint(b)[0] == model.member


def test_calibrate_reads_units_and_refuses_implausible_labels(ensemble, tmp_path, capsys):
    """kcal/mol frames: on main calibrate had no unit options and no label check, and fitted a 23x scale silently;
    then it warned and still wrote that scale."""
    model, stacked, _ = ensemble
    with np.load(DATA / "train_ethanol64.npz") as npz:
        frames = {k: npz[k][:4] for k in ("R", "Z", "E", "F")}
    np.savez(tmp_path / "ev.npz", **frames)
    np.savez(tmp_path / "kcal.npz", **{**frames, "E": frames["E"] / KCAL_PER_MOL, "F": frames["F"] / KCAL_PER_MOL})
    ens = save_checkpoint(tmp_path / "ens", model, stacked)
    reference = calibrate_checkpoint(ens, [tmp_path / "ev.npz"], tmp_path / "ev_cal")["calibration_scale"]
    with pytest.raises(PhysNetInputError, match=r"kcal.npz: RMS force component .* is implausibly large.*: nothing "
                                                r"written"):
        calibrate_checkpoint(ens, [tmp_path / "kcal.npz"], tmp_path / "raw_cal")
    assert not (tmp_path / "raw_cal").exists()
    assert ensemble_main(["calibrate", str(ens), "--data", str(tmp_path / "kcal.npz"), "--energy-unit", "kcal/mol",
                          "--out", str(tmp_path / "kcal_cal")]) == 0  # both in the checkpoint's precision
    assert "implausibly" not in capsys.readouterr().err
    calibrated = load_checkpoint(tmp_path / "kcal_cal")[0]
    assert calibrated.calibration_scale == pytest.approx(reference, rel=1e-6)


def test_calibrate_reads_files_of_other_key_names_through_keys(ensemble, tmp_path):
    """rMD17's names: calibrate refused the file ("missing required key 'R'") before --keys."""
    model, stacked, _ = ensemble
    with np.load(DATA / "train_ethanol64.npz") as npz:
        frames = {k: npz[k][:4] for k in ("R", "Z", "E", "F")}
    np.savez(tmp_path / "physnet.npz", **frames)
    np.savez(tmp_path / "rmd17.npz", coords=frames["R"], nuclear_charges=frames["Z"], energies=frames["E"],
             forces=frames["F"])
    ens = save_checkpoint(tmp_path / "ens", model, stacked)
    reference = calibrate_checkpoint(ens, [tmp_path / "physnet.npz"], tmp_path / "ref_cal")["calibration_scale"]
    assert ensemble_main(["calibrate", str(ens), "--data", str(tmp_path / "rmd17.npz"), "--keys", "R=coords",
                          "Z=nuclear_charges", "E=energies", "F=forces", "--out", str(tmp_path / "cal")]) == 0
    assert load_checkpoint(tmp_path / "cal")[0].calibration_scale == reference


def test_calibrate_refuses_forces_in_other_units_than_the_predictions(tmp_path, capsys):
    """Forces in eV/bohr read as eV/Å are 0.529× the predictions, inside the 0.5-2 slope range the label checks
    accepted: on main calibrate fitted the scale to errors of the unit (3.47 where 1.48 was right) and stored it."""
    from physnetjax.pretrained import example_model_path
    from physnetjax.units import BOHR

    model, params, metadata = load_checkpoint(example_model_path(), with_metadata=True)
    a = save_checkpoint(tmp_path / "a", model, params, metadata)
    b = save_checkpoint(tmp_path / "b", model, perturbed_params(params, 1e-3, seed=1), metadata)
    combine_checkpoints([a, b], tmp_path / "ens")
    with np.load(DATA / "train_ethanol64.npz") as npz:
        frames = {k: npz[k][:16] for k in ("R", "Z", "E", "F")}
    np.savez(tmp_path / "ev.npz", **frames)
    np.savez(tmp_path / "bohr.npz", **{**frames, "F": frames["F"] * BOHR})
    with pytest.raises(PhysNetInputError, match=r"bohr\.npz: the reference forces are 0\.5\d\d× the model's predictions "
                                                r".*0\.5\d\d fits eV/bohr read as eV/Å.*fitted to those errors: nothing "
                                                r"written"):
        calibrate_checkpoint(tmp_path / "ens", [tmp_path / "bohr.npz"], tmp_path / "bad")
    assert not (tmp_path / "bad").exists()
    assert ensemble_main(["calibrate", str(tmp_path / "ens"), "--data", str(tmp_path / "bohr.npz"),
                          "--force-unit", "eV/bohr", "--out", str(tmp_path / "good")]) == 0
    reference = calibrate_checkpoint(tmp_path / "ens", [tmp_path / "ev.npz"], tmp_path / "ev_cal")
    assert load_checkpoint(tmp_path / "good")[0].calibration_scale == pytest.approx(reference["calibration_scale"],
                                                                                    rel=1e-5)


def test_calibrate_refuses_positions_and_forces_the_data_checks_flag(ensemble, molecules, tmp_path, capsys):
    """Positions in bohr (scale 57.2 where 4.33 was right), forces all zero (40.0) or in other units than the energies:
    the data checks warned and calibrate still wrote the scale fitted to those errors (exit 0)."""
    from physnetjax.units import BOHR

    model, stacked, members = ensemble
    z, r = molecules["methanol"]
    rng = np.random.default_rng(3)
    positions = np.array([r + rng.normal(scale=0.02, size=r.shape) for _ in range(12)])
    labels = [predict(model.member, members[0], z, p, dtype=np.float64) for p in positions]
    frames = {"R": positions, "Z": np.tile(z, (12, 1)), "N": np.full(12, len(z)),
              "E": np.array([label["energy"] for label in labels]), "F": np.array([label["forces"] for label in labels])}
    ens = save_checkpoint(tmp_path / "ens", model, stacked)
    for name, changed, expected in (
            ("bohr", {"R": positions / BOHR}, r"bohr\.npz: key 'R': atoms sit 1\.\d\d× the covalent bond length .*are "
                                              r"they in bohr \(multiply by 0\.529177\)\?; the calibration scale would "
                                              r"be fitted to the errors of geometries in another unit: nothing written"),
            ("zero", {"F": 0.0 * frames["F"]}, r"zero\.npz: RMS force component 0 eV/Å is implausibly small")):
        np.savez(tmp_path / f"{name}.npz", **{**frames, **changed})
        assert ensemble_main(["calibrate", str(ens), "--data", str(tmp_path / f"{name}.npz"),
                              "--out", str(tmp_path / f"{name}_cal")]) == 2
        err = capsys.readouterr().err
        assert re.search(expected, err) and err.rstrip().endswith("nothing written"), err
        assert "warning" not in err and not (tmp_path / f"{name}_cal").exists()  # one problem, one message
    np.savez(tmp_path / "right.npz", **frames)
    assert ensemble_main(["calibrate", str(ens), "--data", str(tmp_path / "right.npz"),
                          "--out", str(tmp_path / "right_cal")]) == 0
    np.savez(tmp_path / "per_bohr.npz", **{**frames, "F": frames["F"] * BOHR})
    per_bohr = load_dataset(tmp_path / "per_bohr.npz")  # predictions that judge nothing: the data checks alone
    silent = SimpleNamespace(forces=np.zeros_like(per_bohr.F), energy=np.zeros(len(per_bohr)), dipole=None)
    with pytest.raises(PhysNetInputError, match=r"per_bohr: energies and forces do not match in scale, as for forces "
                                                r"per bohr read as per Å.*: nothing written"):
        check_calibration_labels(per_bohr, silent, "per_bohr")


def test_calibrate_says_nothing_of_dipoles_it_does_not_read(ensemble, tmp_path, capsys):
    """Dipoles in Debye (32 bundled frames, which the trainer's check flags): calibrate told its user to 'pass
    --dipole-unit debye', an option it does not have (unrecognized arguments), about labels its fit never reads."""
    model, stacked, _ = ensemble
    frames = load_dataset(bundled_dataset_path()).subset(np.arange(32))
    np.savez(tmp_path / "debye.npz", R=frames.R, Z=frames.Z, E=frames.E, F=frames.F, D=frames.D / DEBYE)
    assert any("dipoles are implausibly large" in m for m in check_label_sanity(load_dataset(tmp_path / "debye.npz")))
    ens = save_checkpoint(tmp_path / "ens", model, stacked)
    with warnings_as_errors():
        assert ensemble_main(["calibrate", str(ens), "--data", str(tmp_path / "debye.npz"),
                              "--out", str(tmp_path / "cal")]) == 0
    assert "dipole" not in capsys.readouterr().err


def test_combining_a_force_only_model_with_energy_models_is_refused(ensemble, tmp_path, capsys):
    """A model trained without energies has an arbitrary energy offset: on main it joined, and the ensemble's
    energy was off by half that offset with energy_std equal to it (-114 +- 114 eV for a -224 eV methanol)."""
    model, _, members = ensemble
    a = save_checkpoint(tmp_path / "a", model.member, members[0], {"element_energies_fit": {"energies": [0.0]}})
    forces_only = save_checkpoint(tmp_path / "f", model.member, members[1], {"element_energies_fit": None})
    assert ensemble_main(["combine", str(a), str(forces_only), "--out", str(tmp_path / "y")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and re.search(r"f was trained without energy labels \(its energies have an arbitrary "
                                       r"offset\) but .*a on energies: ", err[0]), err
    assert not (tmp_path / "y").exists()
    other = save_checkpoint(tmp_path / "g", model.member, members[2], {"element_energies_fit": None})
    combine_checkpoints([forces_only, other], tmp_path / "forces_only")  # all force-only: the forces are kept


def test_calibrate_cli_fits_the_maximum_likelihood_scale(ensemble, molecules, tmp_path, capsys):
    """Labels from member 0 on three displaced methanols: the stored scale is sqrt(mean |ΔF|²/σ²) over all atoms."""
    model, stacked, members = ensemble
    z, r = molecules["methanol"]
    positions = [r + 0.03 * np.random.default_rng(k).normal(size=r.shape) for k in range(3)]
    labels = [predict(model.member, members[0], z, p, dtype=np.float64) for p in positions]
    np.savez(tmp_path / "frames.npz", R=np.array(positions), Z=np.tile(z, (3, 1)), N=np.full(3, len(z)),
             E=np.array([label["energy"] for label in labels]), F=np.array([label["forces"] for label in labels]))
    ens = save_checkpoint(tmp_path / "ens", model.clone(calibration_scale=5.0), stacked, {"note": "kept"})
    assert ensemble_main(["calibrate", str(ens), "--data", str(tmp_path / "frames.npz"), "--out",
                          str(tmp_path / "cal"), "--float64"]) == 0
    assert "calibration_scale" in capsys.readouterr().out
    ratios = []
    for p, label in zip(positions, labels):
        mean = predict(model, stacked, z, p, dtype=np.float64)  # scale 1: the fixture's model
        ratios += list(np.sum((mean["forces"] - label["forces"]) ** 2, axis=-1) / mean["forces_std"] ** 2)
    calibrated, _, metadata = load_checkpoint(tmp_path / "cal", with_metadata=True)
    assert calibrated.calibration_scale == pytest.approx(np.sqrt(np.mean(ratios)), rel=1e-6)
    assert metadata["note"] == "kept" and metadata["calibration"]["atoms"] == 3 * len(z)
    single = save_checkpoint(tmp_path / "single", model.member, members[0])
    assert ensemble_main(["calibrate", str(single), "--data", str(tmp_path / "frames.npz"), "--out",
                          str(tmp_path / "x")]) == 2
    assert "needs an ensemble" in capsys.readouterr().err


def test_calibrating_on_elements_no_member_was_trained_on_warns(ensemble, molecules, tmp_path, capsys):
    """A scale fitted on untrained elements describes extrapolation, not the model: on main no word was said."""
    model, stacked, members = ensemble
    z, r = molecules["methanol"]
    label = predict(model.member, members[0], z, r, dtype=np.float64)
    np.savez(tmp_path / "frames.npz", R=r[None], Z=z[None], N=[len(z)], E=[label["energy"]], F=label["forces"][None])
    ens = save_checkpoint(tmp_path / "ens", model, stacked, {"trained_elements": [1, 6]})
    with pytest.warns(PhysNetInputWarning, match=r"--data: element\(s\) O \(Z=8\) \(in 1 of 1 frames.*never "
                                                 r"occurred in this model's training data \(trained on H, C\)"):
        calibrate_checkpoint(ens, [tmp_path / "frames.npz"], tmp_path / "cal")


def test_calibrating_on_distances_no_member_was_trained_on_warns(ensemble, molecules, tmp_path):
    """A frame whose O-H bond is shorter than the (hand-made) record of every member: counted and named."""
    model, stacked, members = ensemble
    z, r = molecules["methanol"]
    label = predict(model.member, members[0], z, r, dtype=np.float64)
    np.savez(tmp_path / "frames.npz", R=r[None], Z=z[None], N=[len(z)], E=[label["energy"]], F=label["forces"][None])
    record = {"cutoff": 4.0, "shortest": {"1-8": 1.5}, "longest_nearest_neighbour": {}}
    ens = save_checkpoint(tmp_path / "ens", model, stacked, {"trained_distances": record})
    with pytest.warns(PhysNetInputWarning, match=r"--data: 1 of 1 frames \(first frame 0: atoms 1 \(O\) and 3 \(H\) "
                                                 r"are 0.985 Å apart; the training data's shortest O-H distance was "
                                                 r"1.5 Å\) hold interatomic distances"):
        calibrate_checkpoint(ens, [tmp_path / "frames.npz"], tmp_path / "cal")


def test_a_scale_fitted_on_few_frames_warns(ensemble, molecules, tmp_path):
    """The trainer stored a scale of 4448 fitted on 3 validation frames without a word; a scale from fewer than
    20 frames now warns (in calibrate and in the trainer), one from 20 does not."""
    model, stacked, members = ensemble
    z, r = molecules["methanol"]
    rng = np.random.default_rng(0)
    frames = [r + rng.normal(scale=0.05, size=r.shape) for _ in range(20)]
    labels = [predict(model.member, members[0], z, x, dtype=np.float64) for x in frames]
    for count in (3, 20):
        np.savez(tmp_path / f"frames{count}.npz", R=np.array(frames[:count]), Z=np.array([z] * count),
                 N=[len(z)] * count, E=[label["energy"] for label in labels[:count]],
                 F=np.array([label["forces"] for label in labels[:count]]))
    ens = save_checkpoint(tmp_path / "ens", model, stacked)
    with pytest.warns(PhysNetInputWarning, match=r"calibrate: the calibration scale is fitted on only 3 frame\(s\)"):
        calibrate_checkpoint(ens, [tmp_path / "frames3.npz"], tmp_path / "cal3")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        calibrate_checkpoint(ens, [tmp_path / "frames20.npz"], tmp_path / "cal20")
    assert not [w for w in caught if "fitted on only" in str(w.message)]


def test_calibrating_on_a_members_training_file_warns(ensemble, molecules, tmp_path):
    """The trainer records its data's SHA-256 (combine keeps it per input): on main calibrating on that very file,
    training frames included, fitted a too small scale without a word."""
    model, stacked, members = ensemble
    z, r = molecules["methanol"]
    label = predict(model.member, members[0], z, r, dtype=np.float64)
    np.savez(tmp_path / "frames.npz", R=r[None], Z=z[None], N=[len(z)], E=[label["energy"]], F=label["forces"][None])
    sha = file_sha256(tmp_path / "frames.npz")
    recorded = {"data_sha256": {"runs/train.npz": sha}}
    for name, metadata in (("own", recorded),
                           ("combined", {"ensemble_sources": [{"metadata": {}}, {"metadata": recorded}]})):
        ens = save_checkpoint(tmp_path / name, model, stacked, metadata)
        with pytest.warns(PhysNetInputWarning, match=r"--data .*frames.npz has the content of the training data "
                                                     r"runs/train.npz of this ensemble \(SHA-256 equal\)"):
            calibrate_checkpoint(ens, [tmp_path / "frames.npz"], tmp_path / f"{name}_cal")
    ens = save_checkpoint(tmp_path / "other", model, stacked, {"data_sha256": {"runs/train.npz": "0" * 64}})
    with warnings.catch_warnings(record=True) as caught:  # (one frame: the few-frames warning is expected)
        warnings.simplefilter("always")
        calibrate_checkpoint(ens, [tmp_path / "frames.npz"], tmp_path / "other_cal")
    assert not [w for w in caught if "has the content of the training data" in str(w.message)]


def test_calibrating_on_frames_a_member_was_trained_on_warns_whatever_file_holds_them(ensemble, molecules, tmp_path):
    """The trainer records its training frames (combine keeps them per input): a calibration file holding some of them
    among other frames, in another format, fitted a too small scale without a word (its SHA-256 is no training
    file's)."""
    from physnetjax.data.frame_digests import TRAINING_FRAMES_KEY, FrameRecord, frame_digests

    model, stacked, members = ensemble
    z, r0 = molecules["methanol"]
    rng = np.random.default_rng(5)
    positions = [r0 + rng.normal(0.0, 0.03, r0.shape) for _ in range(5)]
    images = []
    for r in positions:
        atoms = ase.Atoms(numbers=z, positions=r)
        label = predict(model.member, members[0], z, r, dtype=np.float64)
        atoms.calc = SinglePointCalculator(atoms, energy=label["energy"], forces=label["forces"])
        images.append(atoms)
    ase.io.write(tmp_path / "frames.extxyz", images)
    trained = FrameRecord.of(frame_digests([z] * 2, positions[1:3], [len(z)] * 2)).to_metadata()
    for name, metadata in (("own", {TRAINING_FRAMES_KEY: trained}),
                           ("combined", {"ensemble_sources": [{"metadata": {}},
                                                              {"metadata": {TRAINING_FRAMES_KEY: trained}}]})):
        ens = save_checkpoint(tmp_path / name, model, stacked, metadata)
        with pytest.warns(PhysNetInputWarning, match=r"^2 of the 5 frames of --data are frames members of this "
                                                     r"ensemble were trained on \(same atoms and positions\)"):
            calibrate_checkpoint(ens, [tmp_path / "frames.extxyz"], tmp_path / f"{name}_cal")
    other = FrameRecord.of(frame_digests([z], [r0], [len(z)])).to_metadata()
    ens = save_checkpoint(tmp_path / "other", model, stacked, {TRAINING_FRAMES_KEY: other})
    with warnings.catch_warnings(record=True) as caught:  # (5 frames: the few-frames warning is expected)
        warnings.simplefilter("always")
        calibrate_checkpoint(ens, [tmp_path / "frames.extxyz"], tmp_path / "other_cal")
    assert not [w for w in caught if "were trained on" in str(w.message)]


@pytest.mark.slow
def test_check_passes_on_the_ensemble_mean(ensemble, molecules):
    from physnetjax.check.runner import check_model
    from physnetjax.check.settings import CheckSettings

    model, stacked, _ = ensemble
    report = check_model(model, stacked, [molecules["methanol"]], groups=("forces",),
                         settings=CheckSettings.quick())
    assert report.checks and report.passed, [(c.id, c.status, c.message) for c in report.checks]


@pytest.fixture(scope="module")
def md_setup(ensemble, molecules, tmp_path_factory):
    model, stacked, members = ensemble
    z, r = molecules["methanol"]
    directory = tmp_path_factory.mktemp("md")
    ase.io.write(directory / "start.xyz", ase.Atoms(numbers=z, positions=r))
    return model, stacked, members, ase.Atoms(numbers=z, positions=r), directory


def test_md_records_the_spread_flags_and_stops_at_the_threshold(md_setup, capsys, monkeypatch):
    """A flag run (every frame past a tiny threshold) records the spreads; the CLI, continuing from one of its
    frames, then stops mid-run at a later one (without --out writing no file), and so does a run of one chunk
    continuing from another of its frames. The one flag run of 40 frames serves all three (chunks of 4 frames, the
    CLI's)."""
    model, stacked, _, atoms, directory = md_setup
    # the start past the threshold is a PhysNetInputWarning (on main a log record, which the CLI printed as
    # WARNING:physnetjax.md.driver:... instead of its own warning line)
    with pytest.warns(PhysNetInputWarning, match=r"the start geometry \(step 0\) is already past the threshold: .* > "
                                                 r"uncertainty_threshold=1e-12 eV/Å; every frame may be flagged"):
        flagged = simulate(model, stacked, atoms, steps=200, save_every=5, chunk_frames=4, dtype="float64",
                           temperature_K=300.0, out=str(directory / "flag.traj"), uncertainty_threshold=1e-12,
                           on_uncertainty="flag")
    frames = ase.io.read(directory / "flag.traj", index=":")  # full precision
    spreads = np.array([frame.info["max_forces_std_eV_per_A"] for frame in frames])
    assert len(frames) == 40 and not flagged.stopped and flagged.steps == 200
    assert flagged.uncertain_frames == 40 and all(frame.info["uncertain"] for frame in frames)
    assert flagged.max_forces_std_eV_per_A == pytest.approx(spreads.max())
    check = predict(model, stacked, atoms.numbers, frames[3].positions, dtype=np.float64)
    np.testing.assert_allclose(spreads[3], check["forces_std"].max(), rtol=1e-8)

    # The CLI continues from the first frame with a more uncertain one after it (a start geometry past the
    # threshold stops the run before any step), with a threshold between the two.
    start = next(j for j in range(len(frames) - 1) if spreads[j + 1:].max() > spreads[j])
    later = spreads[start + 1:]
    threshold = float(spreads[start] + later.max()) / 2
    first_past = int(np.argmax(later > threshold))
    ase.io.write(directory / "trusted_start.traj", frames[start])  # with its momenta: the same trajectory
    ckpt = save_checkpoint(directory / "ens_ckpt", model, stacked)
    out = directory / "stop.xyz"
    argv = ["--checkpoint", str(ckpt), "--geometry", str(directory / "trusted_start.traj"), "--steps",
            str(5 * len(later)), "--save-every", "5", "--chunk", "4", "--float64",
            "--uncertainty-threshold", repr(threshold)]
    code = md_main(argv + ["--out", str(out)])
    captured = capsys.readouterr()
    assert code == 4 and "stopped early" in captured.out and "1 frame(s) past it" in captured.out
    assert f"at step {5 * (first_past + 1)}:" in captured.err and f"(step {5 * first_past})" in captured.err
    assert f"eV/Å > --uncertainty-threshold {threshold:g} eV/Å;" in captured.err  # main: uncertainty_threshold = …
    kept = ase.io.read(out, index=":") if first_past else []
    assert len(kept) == first_past
    last = ase.io.read(f"{out}.last_trusted.xyz")
    np.testing.assert_allclose(last.positions, frames[start + first_past].positions, atol=1e-8)
    # Stopped inside a chunk, after some trusted frames: the progress bar ends at the last trusted step (it stayed
    # where the chunk began). From a frame of the flag run whose next one stays below a threshold that a later one
    # passes:
    begin = next(j for j in range(len(frames) - 2) if spreads[j + 2:].max() > max(spreads[j], spreads[j + 1]))
    threshold = float(max(spreads[begin], spreads[begin + 1]) + spreads[begin + 2:].max()) / 2
    trusted = int(np.argmax(spreads[begin + 1:] > threshold))
    assert trusted >= 1
    reported = []
    ase.io.write(directory / "mid_chunk_start.traj", frames[begin])
    stopped = simulate(model, stacked, ase.io.read(directory / "mid_chunk_start.traj"),
                       steps=5 * (len(frames) - 1 - begin), save_every=5, chunk_frames=100, dtype="float64",
                       uncertainty_threshold=threshold, progress=reported.append)
    assert stopped.stopped and reported == [0, 5 * trusted]

    # Without --out no file is written (on main: md_last_trusted.xyz appeared in the working directory).
    empty = directory / "no_out"
    empty.mkdir()
    monkeypatch.chdir(empty)
    assert md_main(argv) == 4
    assert f"(step {5 * first_past}) not saved (the run has no --out)" in capsys.readouterr().err
    assert not any(empty.iterdir())


def test_md_stops_before_any_step_when_the_start_geometry_is_past_the_threshold(md_setup, capsys):
    """The start frame was never checked: on main a run whose first frame was past the threshold saved the
    start geometry as "last trusted frame (step 0)" and reported "energy drift: +nan"."""
    model, stacked, _, _, directory = md_setup
    ckpt = save_checkpoint(directory / "ens_start_ckpt", model, stacked)
    out = directory / "untrusted.xyz"
    code = md_main(["--checkpoint", str(ckpt), "--geometry", str(directory / "start.xyz"), "--steps", "10",
                    "--save-every", "5", "--float64", "--uncertainty-threshold", "1e-12", "--out", str(out)])
    captured = capsys.readouterr()
    assert code == 4 and "steps: 0" in captured.out and "nan" not in captured.out
    assert "energy drift: n/a" in captured.out and "1 frame(s) past it" in captured.out
    assert "the start geometry (step 0) is already past the threshold" in captured.err
    assert "eV/Å > --uncertainty-threshold 1e-12 eV/Å;" in captured.err  # main: uncertainty_threshold = 1e-12
    assert "no frame is saved as trusted" in captured.err
    assert not (directory / "untrusted.xyz.last_trusted.xyz").exists()
    # on main: an empty untrusted.xyz and untrusted.xyz.jsonl, and the report's last line "trajectory: untrusted.xyz"
    assert f"the run leaves no {out} nor {out}.jsonl (they would hold no frame)" in captured.err
    assert captured.out.rstrip().endswith(f"trajectory: none (no saved frame was trusted; nothing was written to "
                                          f"{out})")
    assert not out.exists() and not (directory / "untrusted.xyz.jsonl").exists()


def test_md_stopped_at_its_first_saved_frame_leaves_no_empty_trajectory(md_setup, capsys):
    """A run whose first saved frame is past the threshold (its start geometry is not) kept the start geometry as
    its last trusted frame and, on main, left an empty OUT and OUT.jsonl, its report ending "trajectory: OUT" as if
    the file held the run's frames."""
    model, stacked, _, atoms, directory = md_setup
    with pytest.warns(PhysNetInputWarning, match="already past the threshold"):
        simulate(model, stacked, atoms, steps=20, save_every=5, dtype="float64", temperature_K=300.0,
                 out=str(directory / "probe.traj"), uncertainty_threshold=1e-12, on_uncertainty="flag")
    frames = ase.io.read(directory / "probe.traj", index=":")
    spreads = [frame.info["max_forces_std_eV_per_A"] for frame in frames]
    start = next(j for j in range(len(frames) - 1) if spreads[j + 1] > spreads[j])
    ase.io.write(directory / "probe_start.traj", frames[start])  # with its momenta: the same trajectory
    ckpt = save_checkpoint(directory / "first_frame_ckpt", model, stacked)
    out = directory / "first.xyz"
    code = md_main(["--checkpoint", str(ckpt), "--geometry", str(directory / "probe_start.traj"), "--steps", "5",
                    "--save-every", "5", "--float64", "--uncertainty-threshold",
                    repr((spreads[start] + spreads[start + 1]) / 2), "--out", str(out)])
    captured = capsys.readouterr()
    assert code == 4 and "steps: 0" in captured.out
    assert captured.out.rstrip().endswith(f"trajectory: none (no saved frame was trusted; nothing was written to "
                                          f"{out})")
    assert captured.err.rstrip().endswith(f"last trusted frame (step 0) saved to {out}.last_trusted.xyz; the run "
                                          f"leaves no {out} nor {out}.jsonl (they would hold no frame)")
    assert not out.exists() and not (directory / "first.xyz.jsonl").exists()
    np.testing.assert_allclose(ase.io.read(f"{out}.last_trusted.xyz").positions, frames[start].positions, atol=1e-10)


def test_a_restart_stopped_before_its_first_trusted_frame_keeps_the_frames_before_it(md_setup):
    """A restart appends: stopped at once, it adds no frame and leaves the earlier ones as they were."""
    model, stacked, _, atoms, directory = md_setup
    out, state = directory / "continued.xyz", directory / "continued.npz"
    simulate(model, stacked, atoms, steps=5, save_every=5, dtype="float64", out=str(out), checkpoint_path=str(state))
    report = simulate(model, stacked, atoms, steps=5, save_every=5, dtype="float64", out=str(out), restart=str(state),
                      uncertainty_threshold=1e-12)
    assert report.stopped and report.frames == 0 and report.stop_reason.endswith(f"; no frame was added to {out}")
    assert report.lines()[-1] == f"trajectory: none (no saved frame was trusted; nothing was written to {out})"
    assert len(ase.io.read(out, index=":")) == 1 and len(read_log(f"{out}.jsonl")) == 1


def test_md_threshold_errors_and_single_model_unchanged(md_setup, capsys):
    model, stacked, members, atoms, directory = md_setup
    with pytest.raises(PhysNetInputError, match="needs an ensemble"):
        simulate(model.member, members[0], atoms, steps=10, save_every=5, uncertainty_threshold=0.1)
    with pytest.raises(PhysNetInputError, match="> 0"):
        simulate(model, stacked, atoms, steps=10, save_every=5, uncertainty_threshold=-1.0)
    single = simulate(model.member, members[0], atoms, steps=5, save_every=5, dtype="float64",
                      out=str(directory / "single.xyz"))
    assert single.max_forces_std_eV_per_A is None and not single.stopped and single.steps == 5
    assert "max_forces_std_eV_per_A" not in ase.io.read(directory / "single.xyz").info
    ckpt = save_checkpoint(directory / "single_ckpt", model.member, members[0])
    assert md_main(["--checkpoint", str(ckpt), "--geometry", str(directory / "start.xyz"), "--steps", "10",
                    "--save-every", "5", "--uncertainty-threshold", "0.1"]) == 2
    assert "needs an ensemble" in capsys.readouterr().err


@pytest.mark.slow
def test_npt_records_the_spread_of_the_frame_and_cell(md_setup):
    """NPT frames: the recorded spread is predict_periodic's at the frame's positions and cell."""
    model, stacked, _, atoms, directory = md_setup
    box = atoms.copy()
    box.set_cell(np.eye(3) * 18.0)
    box.pbc = True
    box.center()
    with pytest.warns(PhysNetInputWarning, match=r"the start geometry \(step 0\) is already past the threshold"):
        simulate(model, stacked, box, ensemble="npt", steps=10, save_every=5, chunk_frames=2, dtype="float64",
                 temperature_K=300.0, barostat_time_fs=100.0, out=str(directory / "npt.traj"),
                 uncertainty_threshold=1e-12, on_uncertainty="flag")
    frames = ase.io.read(directory / "npt.traj", index=":")
    assert len(frames) == 2 and all(frame.info["uncertain"] for frame in frames)
    last = frames[-1]
    check = predict_periodic(model, stacked, last.numbers, last.positions, last.cell.array, dtype=np.float64)
    np.testing.assert_allclose(last.info["max_forces_std_eV_per_A"], check["forces_std"].max(), rtol=1e-8)
