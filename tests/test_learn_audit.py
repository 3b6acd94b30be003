"""Audit of the numbers the ensemble tools and the learning loop report, against NumPy float64 recomputations.

* ``ensemble calibrate`` on held-out frames that include isolated atoms (an element's reference frame, whose
  forces are 0 for every member: spread exactly 0): the whole calibration was refused ("spreads must be finite
  and > 0"); those atoms are now left out, and the scale, NLLs and Spearman's ρ equal a member-by-member
  recomputation.
* ``eval`` of such frames: its force NLL and error/spread ratio were None for the whole data set.
* ``learn --uncertainty-threshold``: the MD marks a frame uncertain when its spread is past the threshold (>),
  but the loop took a frame whose spread equals it as a candidate.
"""

import json
import warnings
from pathlib import Path

import ase
import ase.io
import jax
import numpy as np
import pytest
from conftest import perturbed_params
from scipy.stats import spearmanr

from physnetjax import PhysNet, init_params, predict, save_checkpoint
from physnetjax.data import bundled_dataset_path, load_dataset
from physnetjax.ensemble import PhysNetEnsemble, stack_members
from physnetjax.ensemble.calibrate_checkpoint import calibrate_checkpoint
from physnetjax.errors import PhysNetInputWarning
from physnetjax.eval.cli import main as eval_main
from physnetjax.learn import LearnConfig
from physnetjax.learn.frames import labelled_frames


@pytest.fixture(scope="module")
def members():
    """Three float64 members that differ (independent initialisation and noise)."""
    jax.config.update("jax_enable_x64", True)
    member = PhysNet(features=8, max_degree=1, num_iterations=1, num_basis_functions=8, cutoff=4.0,
                     max_atomic_number=9, n_res=1, param_dtype=np.float64)
    return member, [perturbed_params(init_params(member, k), 0.1, seed=k) for k in range(3)]


def test_calibrate_leaves_out_isolated_atoms_and_reports_the_recomputed_numbers(members, tmp_path):
    member, params = members
    bundled = load_dataset(bundled_dataset_path())
    rng = np.random.default_rng(0)
    count, n = 6, 9
    R, Z, N = np.zeros((count + 2, n, 3)), np.zeros((count + 2, n), int), np.zeros(count + 2, int)
    E, F = np.zeros(count + 2), np.zeros((count + 2, n, 3))
    for k in range(count):  # labels: member 0 plus noise
        z, r = bundled.Z[40 + k, :n], bundled.R[40 + k, :n]
        label = predict(member, params[0], z, r, dtype=np.float64)
        R[k], Z[k], N[k] = r, z, n
        E[k] = label["energy"] + 0.01 * rng.normal()
        F[k] = label["forces"] + 0.02 * rng.normal(size=(n, 3))
    # an isolated O atom labelled exactly (error 0) and an isolated H atom with a force label the spread cannot explain
    for k, (z, force) in enumerate([(8, 0.0), (1, 0.1)], start=count):
        Z[k, 0], N[k] = z, 1
        E[k] = predict(member, params[0], [z], np.zeros((1, 3)), dtype=np.float64)["energy"]
        F[k, 0, 0] = force
    np.savez(tmp_path / "heldout.npz", R=R, Z=Z, N=N, E=E, F=F)
    ensemble = save_checkpoint(tmp_path / "ens", PhysNetEnsemble(member, 3, calibration_scale=2.0),
                               stack_members(params))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        record = calibrate_checkpoint(ensemble, [tmp_path / "heldout.npz"], tmp_path / "cal", dtype="float64")
    unexplained = [str(w.message) for w in caught if "agree exactly" in str(w.message)]
    assert len(unexplained) == 1 and "1 of the 2 sample(s)" in unexplained[0]
    assert issubclass([w.category for w in caught if "agree exactly" in str(w.message)][0], PhysNetInputWarning)

    # NumPy float64, member by member: spreads sqrt(mean_k |F_k − F̄|²) (population, vector norm), scale 1
    errors, spreads, frame_max, frame_rmse, energy_std, energy_error = [], [], [], [], [], []
    for k in range(count + 2):
        m = int(N[k])
        outputs = [predict(member, p, Z[k, :m], R[k, :m], dtype=np.float64) for p in params]
        forces = np.array([o["forces"] for o in outputs], np.float64)
        energies = np.array([o["energy"] for o in outputs], np.float64)
        sigma = np.sqrt(np.mean(np.sum((forces - forces.mean(0)) ** 2, axis=-1), axis=0))
        error = forces.mean(0) - F[k, :m]
        errors.append(error)
        spreads.append(sigma)
        frame_max.append(sigma.max())
        frame_rmse.append(np.sqrt(np.mean(np.sum(error**2, axis=-1))))
        energy_std.append(np.sqrt(np.mean((energies - energies.mean()) ** 2)))
        energy_error.append(abs(energies.mean() - E[k]))
    errors, spreads = np.concatenate(errors), np.concatenate(spreads)
    assert np.sum(spreads == 0) == 2  # the isolated atoms
    keep = spreads > 0
    ratio = np.sum(errors[keep] ** 2, axis=-1) / spreads[keep] ** 2
    scale = np.sqrt(np.mean(ratio))

    def nll(s):
        variance = s**2 * spreads[keep] ** 2 / 3
        return np.mean(1.5 * np.log(2 * np.pi * variance) + np.sum(errors[keep] ** 2, axis=-1) / (2 * variance))

    assert record["calibration_scale"] == pytest.approx(scale, rel=1e-9)
    assert record["atoms"] == count * n and record["atoms_without_spread"] == 2 and record["frames"] == count + 2
    assert record["force_nll_per_atom_uncalibrated"] == pytest.approx(nll(1.0), rel=1e-9)
    assert record["force_nll_per_atom_calibrated"] == pytest.approx(nll(scale), rel=1e-9)
    assert record["spearman_max_forces_std_vs_force_rmse"] == pytest.approx(
        spearmanr(frame_max, frame_rmse).statistic, abs=1e-12)
    assert record["spearman_energy_std_vs_abs_energy_error"] == pytest.approx(
        spearmanr(energy_std, energy_error).statistic, abs=1e-12)

    # eval of the same frames with the ensemble's own scale 2.0: the isolated atoms made its NLL and error/spread None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert eval_main(["--checkpoint", str(ensemble), "--data", str(tmp_path / "heldout.npz"), "--float64",
                          "--no-plots", "--out", str(tmp_path / "eval")]) == 0
    uncertainty = json.loads((tmp_path / "eval" / "summary.json").read_text())["uncertainty"]
    assert uncertainty["force_error_over_spread"] == pytest.approx(scale / 2.0, rel=1e-9)
    assert uncertainty["force_nll_per_atom"] == pytest.approx(nll(2.0), rel=1e-9)


def test_candidates_are_the_md_frames_past_the_uncertainty_threshold(tmp_path, monkeypatch):
    """Spreads 0.05, 0.1, 0.2 eV/Å at threshold 0.1: the MD marks only 0.2 uncertain (spread > threshold), and only it
    is a candidate (0.1 was one too); a round whose largest spread equals the threshold says so."""
    import physnetjax.learn.explore as explore_module
    from physnetjax.learn.explore import SPREAD_KEY, explore
    from physnetjax.learn.loop import _warn_if_no_candidates

    bundled = load_dataset(bundled_dataset_path())
    frames = [ase.Atoms(numbers=bundled.Z[k, :9], positions=bundled.R[k, :9]) for k in range(2)]
    data = labelled_frames([a.numbers for a in frames], [a.positions for a in frames],
                           [{"E": 0.0, "F": np.zeros((9, 3))}] * 2, 0.0, "audit")

    def recorded_simulate(model, params, start, *, out, **settings):
        ase.io.write(out, [start] * 3)
        Path(f"{out}.jsonl").write_text("".join(json.dumps({SPREAD_KEY: s}) + "\n" for s in (0.05, 0.1, 0.2)))

    monkeypatch.setattr(explore_module, "simulate", recorded_simulate)
    monkeypatch.setattr(explore_module, "load_checkpoint", lambda path, with_metadata: (None, None, {}))
    config = LearnConfig(out=str(tmp_path / "run"), temperatures=(300.0,), md_steps=12, save_every=4,
                         uncertainty_threshold=0.1)
    candidates, summaries = explore("model", data, tmp_path / "md", config, round_index=1)
    np.testing.assert_array_equal(candidates.spreads, [0.2])
    assert candidates.origins == ["md-300K.xyz[2]"] and summaries[0]["candidates"] == 1
    with pytest.warns(PhysNetInputWarning, match=r"the largest force spread of its MD frames, 0.1 eV/Å, is not past "
                                                 r"uncertainty_threshold 0.1 eV/Å"):
        _warn_if_no_candidates(np.zeros(0), [{"max_spread_eV_per_A": 0.1}], config, 1, None)
