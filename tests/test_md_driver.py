"""MD driver: CLI output and report, restart from MD checkpoints, overflow re-run, stop on absurd forces,
stop on NVE energy not conserved, trajectory truncated on restart."""

import json
from pathlib import Path

import ase
import ase.io
import jax
import numpy as np
import pytest
from conftest import perturbed_params

from physnetjax import PhysNet, init_params, predict
from physnetjax.checkpoint.format import save_checkpoint
from physnetjax.errors import CloseContactWarning, PhysNetInputError, PhysNetInputWarning
from physnetjax.md.__main__ import main
from physnetjax.md.io import momenta_to_ase
from physnetjax.md.driver import (EnergyConservationError, MDInstabilityError, MDReport, drift_and_fluctuation,
                                  simulate)
from physnetjax.training_record import TrainingRecord
from physnetjax.units import AMU_A2_PER_FS2_IN_EV, BOLTZMANN


@pytest.fixture(scope="module")
def system(molecules):
    jax.config.update("jax_enable_x64", True)
    model = PhysNet(features=8, max_degree=1, num_iterations=2, num_basis_functions=8, cutoff=4.0,
                    max_atomic_number=9, charges=False, zbl=True, n_res=1)
    params = perturbed_params(init_params(model, 0), 0.1, seed=4)
    z, r = molecules["ethanol"]
    return model, params, ase.Atoms(numbers=z, positions=r)


def test_drift_fit_recovers_a_known_line():
    t = np.linspace(0, 2, 50)
    e = 3.0 + 0.009 * t + 0.001 * np.sin(40 * t)
    drift, fluctuation = drift_and_fluctuation(t, e, 9)
    np.testing.assert_allclose(drift, 1.0, rtol=0.02)
    np.testing.assert_allclose(fluctuation, 1e3 * 0.001 / np.sqrt(2) / 9, rtol=0.05)


@pytest.mark.slow
def test_cli_writes_trajectory_and_report_and_restarts(system, tmp_path, capsys):
    """CLI run of 40 steps + restart for 40 more (with --edge-chunk-size) == one simulate() of 80 steps."""
    model, params, atoms = system
    ckpt = tmp_path / "model"
    save_checkpoint(ckpt, model, params)
    geometry = tmp_path / "start.traj"
    ase.io.write(geometry, atoms)
    common = ["--checkpoint", str(ckpt), "--geometry", str(geometry), "--ensemble", "nve", "--temperature", "300",
              "--timestep", "0.5", "--steps", "40", "--save-every", "10", "--chunk", "2", "--float64"]
    assert main(common + ["--out", str(tmp_path / "a.xyz"), "--md-checkpoint", str(tmp_path / "state.npz")]) == 0
    report = capsys.readouterr().out
    assert "energy drift" in report and "steps/s" in report and "mean temperature" in report
    assert "edges: all 72 ordered pairs" in report  # ethanol is smaller than the 4 Å cutoff + skin
    frames = ase.io.read(tmp_path / "a.xyz", index=":")
    assert len(frames) == 4
    for frame in frames:
        kinetic = frame.get_kinetic_energy()
        np.testing.assert_allclose(frame.info["temperature_K"], 2 * kinetic / (3 * 9 - 3) / BOLTZMANN, rtol=1e-6)
        np.testing.assert_allclose(frame.get_potential_energy() + kinetic, frame.info["conserved_eV"], atol=1e-6)
    # The continuation runs with edge chunks (72 edges in chunks of ≤ 16): same trajectory.
    assert main(common + ["--out", str(tmp_path / "b.traj"), "--restart", str(tmp_path / "state.npz"),
                          "--edge-chunk-size", "16"]) == 0
    assert main(common + ["--edge-chunk-size", "0"]) == 2
    assert "error: --edge-chunk-size must be >= 1" in capsys.readouterr().err
    restarted = ase.io.read(tmp_path / "b.traj", index=":")
    simulate(model, params, atoms, steps=80, save_every=10, dtype="float64", temperature_K=300.0,
             out=str(tmp_path / "c.traj"))
    continuous = ase.io.read(tmp_path / "c.traj", index=":")
    np.testing.assert_allclose(restarted[-1].positions, continuous[-1].positions, atol=1e-10)
    np.testing.assert_allclose(restarted[-1].get_momenta(), continuous[-1].get_momenta(), atol=1e-10)


def test_float32_md_energies_keep_dft_sized_element_energies_exact(system, tmp_path):
    """Element energies of DFT size (Σ E0 ≈ −180,000 eV for ethanol, a float32 grid of 16 meV) were added on the
    device in float32: every written and logged energy was off by up to 8 meV from the model's. They are now added
    on the host in float64: each frame's energy is predict's in float64 at its positions, to the float32 error of
    the network's part (~1e-5 eV), and the conserved energy written with it is E_pot + E_kin (NVE). Each frame and
    log line also carries its step and time (step × 0.75 fs) and kinetic temperature 2 K / ((3N − 3) k_B); each log
    line the frame's largest |F_i|."""
    model, params, atoms = system
    dft_sized = model.clone(element_energies=tuple(-20000.0 - 13.0 * z for z in range(model.max_atomic_number + 1)))
    out = tmp_path / "run.traj"
    simulate(dft_sized, params, atoms, steps=40, save_every=10, dtype="float32", temperature_K=300.0, out=str(out),
             timestep_fs=0.75)
    frames = ase.io.read(out, index=":")
    assert len(frames) == 4
    records = [json.loads(line) for line in Path(f"{out}.jsonl").read_text().splitlines()]
    for k, (frame, record) in enumerate(zip(frames, records, strict=True)):
        assert frame.info["step"] == record["step"] == 10 * (k + 1)
        assert frame.info["time_fs"] == record["time_fs"] == pytest.approx(7.5 * (k + 1), rel=1e-12)
        temperature = 2 * frame.get_kinetic_energy() / ((3 * 9 - 3) * 8.617333262e-5)
        assert frame.info["temperature_K"] == record["temperature_K"] == pytest.approx(temperature, rel=1e-6)
        reference = predict(dft_sized, params, frame.numbers, frame.positions, dtype=np.float64)["energy"]
        assert abs(frame.get_potential_energy() - reference) < 1e-4, frame.get_potential_energy() - reference
        kinetic = frame.get_kinetic_energy()
        assert abs(frame.get_potential_energy() + kinetic - frame.info["conserved_eV"]) < 1e-4
        largest = np.linalg.norm(frame.get_forces(), axis=1).max()
        assert record["max_force_eV_per_A"] == pytest.approx(largest, rel=1e-6)


def test_overflow_discards_chunk_and_reruns(system):
    """A list with no head-room overflows in a hot dilute gas; the re-run chunk gives the same trajectory and
    progress is reported once per chunk."""
    model, params, _ = system
    rng = np.random.default_rng(5)
    grid = np.stack(np.meshgrid(*[np.arange(3)] * 3, indexing="ij"), -1).reshape(-1, 3)[:14]
    atoms = ase.Atoms(numbers=rng.choice([1, 6], size=14), positions=3.2 * grid + rng.normal(scale=0.3, size=(14, 3)))
    kwargs = dict(steps=200, save_every=10, chunk_frames=5, dtype="float64", temperature_K=5000.0, skin=0.05)
    reported = []
    tight = simulate(model, params, atoms, capacity_multiplier=1.0, progress=reported.append, **kwargs)
    roomy = simulate(model, params, atoms, capacity_multiplier=3.0, **kwargs)
    assert tight.reallocations >= 1
    assert reported == [0, 50, 100, 150, 200]  # 0 once the inputs passed, then each chunk once (re-runs too)
    assert not tight.all_pairs and tight.edge_set.startswith("neighbor list")
    assert roomy.reallocations == 0
    np.testing.assert_allclose(tight.drift_meV_per_atom_per_ps, roomy.drift_meV_per_atom_per_ps, rtol=1e-8)
    np.testing.assert_allclose(tight.mean_temperature_K, roomy.mean_temperature_K, rtol=1e-10)


def hydrogen_shot_at_carbon(atoms):
    """A copy of ethanol whose H nearest to C0 moves straight at it at 0.3 Å/fs, every other atom at rest."""
    atoms = atoms.copy()
    carbon, hydrogen = 0, int(np.argmin(np.linalg.norm(atoms.positions - atoms.positions[0], axis=-1)[3:])) + 3
    direction = atoms.positions[carbon] - atoms.positions[hydrogen]
    momenta = np.zeros((len(atoms), 3))
    momenta[hydrogen] = 0.3 * atoms.get_masses()[hydrogen] * direction / np.linalg.norm(direction)
    atoms.set_momenta(momenta_to_ase(momenta))
    return atoms


def test_absurd_force_stops_and_saves_last_good_frame(system, tmp_path):
    """An H atom shot at a C at 0.3 Å/fs runs into the repulsive wall: |F| passes 1.3× its start value."""
    model, params, atoms = system
    atoms = hydrogen_shot_at_carbon(atoms)
    limit = 1.3 * np.linalg.norm(predict(model, params, atoms.numbers, atoms.positions)["forces"], axis=-1).max()
    out = tmp_path / "run.xyz"
    with pytest.warns(PhysNetInputWarning, match="total momentum"), pytest.raises(MDInstabilityError,
                                                                                  match="MD stopped at step"):
        simulate(model, params, atoms, steps=200, save_every=2, dtype="float64", max_force=limit, out=str(out))
    last = ase.io.read(f"{out}.last_good.xyz")
    assert np.linalg.norm(last.get_forces(), axis=-1).max() <= limit
    written = ase.io.read(out, index=":") if out.exists() else []  # no frame kept: no file
    assert last.info["step"] == 2 * len(written)


def test_a_force_spike_between_saved_frames_stops_the_run(system, tmp_path):
    """--max-force was checked at saved frames only: an H atom bouncing off a C within 5 steps peaked at ~30 eV/Å
    between two saved frames (every 5 steps) and the run went on. The in-jit loop now records each interval's
    peak |F|; the oracle is the same run saving every step."""
    model, params, atoms = system
    atoms = hydrogen_shot_at_carbon(atoms)
    every_step = tmp_path / "every_step.xyz"
    with pytest.warns(PhysNetInputWarning, match="total momentum"):
        simulate(model, params, atoms, steps=20, save_every=1, dtype="float64", max_force=1e6, out=str(every_step))
    per_step = np.array([np.linalg.norm(frame.get_forces(), axis=-1).max()
                         for frame in ase.io.read(every_step, index=":")])
    at_saved_frames = per_step[4::5]
    assert per_step.max() > 1.5 * at_saved_frames.max()  # the spike lies between saved frames
    limit = 0.5 * (per_step.max() + at_saved_frames.max())
    first_window = int(np.argmax(per_step > limit)) // 5
    peak = per_step[5 * first_window:5 * first_window + 5].max()
    out = tmp_path / "run.xyz"
    with pytest.warns(PhysNetInputWarning, match="total momentum"), pytest.raises(
            MDInstabilityError, match=rf"max \|F\| = {peak:.3g} eV/Å"):
        simulate(model, params, atoms, steps=20, save_every=5, dtype="float64", max_force=limit, out=str(out))
    assert ase.io.read(f"{out}.last_good.xyz").info["step"] == 5 * first_window


def test_bad_arguments(system):
    model, params, atoms = system
    with pytest.raises(ValueError, match="multiple"):
        simulate(model, params, atoms, steps=15, save_every=10)
    with pytest.raises(ValueError, match="ensemble"):
        simulate(model, params, atoms, ensemble="npt")
    with pytest.raises(ValueError, match="trajectory"):
        simulate(model, params, atoms, out="x.pdb")


@pytest.mark.parametrize("arguments, message", [
    (dict(temperature_K=-5.0), "temperature_K must be finite and >= 0 K, received -5.0"),
    (dict(temperature_K=2e6), r"temperature_K must be at most 1e\+06 K \(k_B T = 86 eV there, beyond any "
                              r"chemistry\), received 2000000\.0"),
    (dict(ensemble="csvr", temperature_end_K=1e7), r"temperature_end_K must be at most 1e\+06 K"),
    (dict(timestep_fs=0.0), "timestep_fs must be finite and > 0 fs, received 0.0"),
    (dict(ensemble="langevin", friction=0.0), r"friction must be finite and > 0 fs\^-1, received 0.0"),
    (dict(chunk_frames=0), "chunk_frames must be an integer >= 1"),
    (dict(steps=15, save_every=10), r"steps \(15\) must be a positive multiple of save_every \(10\)"),
    (dict(steps=2**32, save_every=2**31), r"steps must be at most 2147483647 \(steps are counted in 32-bit integers "
                                          r"on the device\), received 4294967296"),
    (dict(ensemble="nvt-nhc", chain_length=0), "chain_length must be an integer >= 1"),
    (dict(ensemble="nvt-nhc", temperature_K=0.0), "temperature_K must be > 0 K for ensemble nvt-nhc"),
    (dict(ensemble="csvr", thermostat_time_fs=0.0), "thermostat_time_fs must be finite and > 0 fs"),
    (dict(ensemble="npt", compressibility_per_bar=0.0), "compressibility_per_bar must be finite and > 0 bar"),
    (dict(ensemble="npt", pressure_bar=1e16), r"pressure_bar must be within ±1e\+08 bar \(10 TPa: P × 1 Å³ = 62 eV "
                                              r"there, beyond any chemistry\), received 1e\+16: is it in bar\?"),
    (dict(ensemble="npt", pressure_end_bar=-2e8), r"pressure_end_bar must be within ±1e\+08 bar .*received -2000"),
    (dict(energy_tolerance=0.0), "energy_tolerance must be > 0 meV/atom"),
    (dict(uncertainty_threshold=-1.0), "uncertainty_threshold must be finite and > 0 eV/Å"),
    (dict(ensemble="nvt"), r"ensemble must be one of \(.*'nve'.*\), received 'nvt'"),
    (dict(on_energy_drift="ignore"), r"on_energy_drift must be one of \('stop', 'warn'\), received 'ignore'"),
    (dict(on_uncertainty="ignore"), r"on_uncertainty must be one of \(.*\), received 'ignore'"),
    # main: a raw NotADirectoryError after writing a stray file, a raw FileNotFoundError
    (dict(out="run.xyz/"), r"out run\.xyz/ ends in a path separator, a directory; give a file name"),
    (dict(out="no_such_folder/run.xyz"), r"out no_such_folder/run\.xyz: directory no_such_folder does not exist"),
])
def test_the_python_api_names_its_keywords(system, arguments, message):
    """simulate's messages name its keywords (the command line passes its option names instead)."""
    model, params, atoms = system
    with pytest.raises(PhysNetInputError, match=message):
        simulate(model, params, atoms, **{"steps": 10, "save_every": 5, **arguments})


def test_langevin_frames_count_3n_degrees_of_freedom(system, tmp_path):
    """Langevin's noise moves the centre of mass, so its temperature counts all 3N degrees of freedom (the other
    ensembles 3N − 3): each frame's temperature_K is 2 K / (3N k_B) of its own momenta."""
    model, params, atoms = system
    out = tmp_path / "langevin.traj"
    simulate(model, params, atoms, ensemble="langevin", friction=0.05, steps=10, save_every=5, dtype="float64",
             temperature_K=300.0, out=str(out))
    frames = ase.io.read(out, index=":")
    assert len(frames) == 2
    for frame in frames:
        expected = 2 * frame.get_kinetic_energy() / (3 * len(frame) * BOLTZMANN)
        assert frame.info["temperature_K"] == pytest.approx(expected, rel=1e-9)


def test_ensemble_settings_accept_the_edges_of_their_ranges():
    """The limits check_ensemble_settings documents, from the accepting side: a Nosé–Hoover chain of one thermostat
    at 0.5 K (> 0 K, an integer >= 1), the smallest positive barostat time and compressibility, and a pressure ramp
    between the largest tension and compression accepted (±1e8 bar)."""
    from physnetjax.md.ensembles import EnsembleOptions, check_ensemble_settings

    check_ensemble_settings("nvt-nhc", EnsembleOptions(temperature_K=0.5, chain_length=1))
    check_ensemble_settings("npt", EnsembleOptions(barostat_time_fs=1e-3, compressibility_per_bar=1e-12,
                                                   pressure_bar=-1e8, pressure_end_bar=1e8))
    with pytest.raises(PhysNetInputError, match=r"chain_length must be an integer >= 1 \(thermostats in the chain\), "
                                                r"received 1\.5"):
        check_ensemble_settings("nvt-nhc", EnsembleOptions(chain_length=1.5))


def test_settings_of_other_ensembles_are_refused_not_ignored(system):
    """On main simulate(ensemble="nve", friction=0.05) ran NVE and dropped the friction without a word (the CLI
    refused such options, the Python API did not)."""
    model, params, atoms = system
    with pytest.raises(PhysNetInputError, match=r"ensemble='nve' does not use friction=0.05 \(langevin only\)"):
        simulate(model, params, atoms, ensemble="nve", friction=0.05, steps=5, save_every=5)
    with pytest.raises(PhysNetInputError, match=r"ensemble='langevin' does not use thermostat_time_fs=50.0 "
                                                r"\(nvt-nhc / csvr / npt only\), energy_tolerance=5.0 \(nve only\)"):
        simulate(model, params, atoms, ensemble="langevin", thermostat_time_fs=50.0, energy_tolerance=5.0)
    with pytest.raises(PhysNetInputError, match=r"anisotropic=False \(npt only\)"):
        simulate(model, params, atoms, ensemble="csvr", anisotropic=False)


def test_restart_of_another_model_or_ensemble_through_the_python_api(system, tmp_path):
    """On main simulate(restart=...) went on with whatever model it was given and switched ensembles silently
    (only the CLI checked the records of the MD checkpoint)."""
    model, params, atoms = system
    state = tmp_path / "state.npz"
    common = dict(steps=10, save_every=5, dtype="float64")
    simulate(model, params, atoms, ensemble="langevin", checkpoint_path=str(state), **common)
    with pytest.raises(PhysNetInputError, match=f"restart file {state} was written by a run of another model"):
        simulate(model, perturbed_params(params, 0.01, seed=5), atoms, ensemble="langevin", restart=str(state),
                 **common)
    with pytest.warns(UserWarning, match=f"restart file {state} was a langevin run and continues as ensemble nve"):
        report = simulate(model, params, atoms, restart=str(state), **common)
    assert report.ensemble == "nve"
    simulate(model, params, atoms, ensemble="langevin", restart=str(state), **common)


def test_a_langevin_run_continued_in_nve_loses_its_drift_and_its_heat(system, tmp_path):
    """Equilibrate, then NVE: Langevin noise leaves the centre of mass moving (ethanol: 0.0876 eV, 360 K reported
    instead of 275 K) and its heat offset NVE's conserved energy (-309.3213 eV for E_pot + K = -309.4124 eV); on
    main the NVE restart kept both, unwarned. Now the total momentum is removed as for a geometry file's momenta,
    with a warning giving the kinetic energy removed, and NVE's conserved quantity is its total energy."""
    model, params, atoms = system
    state, out = tmp_path / "state.npz", tmp_path / "nve.xyz"
    common = dict(save_every=10, dtype="float64")
    simulate(model, params, atoms, ensemble="langevin", friction=0.2, steps=20, checkpoint_path=str(state), **common)
    with np.load(state) as saved:
        assert float(saved["heat"]) != 0.0
        total = np.sum(saved["momenta"], axis=0)
        drift_eV = float(total @ total) / (2 * atoms.get_masses().sum()) * AMU_A2_PER_FS2_IN_EV
    with pytest.warns(PhysNetInputWarning, match=rf"restart file {state}: the momenta of its langevin run have a "
                                                 rf"total momentum of .* removed, which lowers the kinetic energy by "
                                                 rf"{drift_eV:.3g} eV"):
        simulate(model, params, atoms, restart=str(state), steps=10, out=str(out), **common)
    frame = ase.io.read(out)
    np.testing.assert_allclose(frame.get_momenta().sum(axis=0), 0.0, atol=1e-7)  # extxyz keeps 8 decimals
    record = json.loads(Path(f"{out}.jsonl").read_text())
    np.testing.assert_allclose(record["conserved_eV"], record["potential_energy_eV"] + record["kinetic_energy_eV"],
                               rtol=0, atol=1e-9)


def test_a_total_charge_for_a_model_without_charges_warns_in_md(system):
    """The MD of a cation with a model without charges ran the neutral molecule's dynamics without a word (predict,
    the calculator and the spectra warned, simulate did not)."""
    model, params, atoms = system
    cation = atoms.copy()
    cation.info["charge"] = 1
    with pytest.warns(UserWarning, match=r"MD start geometry: total charge 1 e given to a model without charges"):
        simulate(model, params, cation, steps=5, save_every=5, dtype="float64")
    with pytest.warns(UserWarning, match=r"MD start geometry: total charge \+1 e never occurred in this model's "
                                         r"training data \(trained on total charge 0 e\)"):
        simulate(model, params, cation, steps=5, save_every=5, dtype="float64",
                 training_record=TrainingRecord(charges=(0.0,)))


def test_a_start_geometry_in_bohr_warns_in_md(system):
    """Ethanol in bohr read as Å ran with a training-distances warning only: train, data.generate and the spectra
    asked whether the positions were in bohr, md did not."""
    import warnings

    from physnetjax.errors import LengthUnitWarning

    model, params, atoms = system
    in_bohr = atoms.copy()
    in_bohr.positions /= 0.529177
    with pytest.warns(LengthUnitWarning, match=r"^MD start geometry: atoms sit 1\.8\d× the covalent bond length .*"
                                               r"are they in bohr \(multiply by 0\.529177\)\?$"):
        simulate(model, params, in_bohr, steps=5, save_every=5, dtype="float64")
    with warnings.catch_warnings():
        warnings.simplefilter("error", LengthUnitWarning)
        simulate(model, params, atoms, steps=5, save_every=5, dtype="float64")


def test_the_length_unit_of_a_large_structure_is_judged_on_a_sample_of_its_atoms(monkeypatch):
    """The nearest-neighbour ratios of every atom against every atom were n² numbers (8 GB at 32 000 atoms); a
    sample of atoms against all keeps the verdict (here 250 ethanol molecules in bohr, 2 250 atoms)."""
    from physnetjax import validation

    ethanol = ase.io.read(Path(validation.__file__).parent / "pretrained" / "ethanol" / "ethanol.xyz")
    grid = np.stack(np.meshgrid(*[np.arange(10)] * 2, np.arange(3), indexing="ij"), -1).reshape(-1, 3)[:250]
    z = np.tile(ethanol.numbers, 250)
    r = ((ethanol.positions[None] + 10.0 * grid[:, None]) / 0.529177).reshape(-1, 3)
    shapes = []
    ratios = validation.covalent_distance_ratios
    monkeypatch.setattr(validation, "covalent_distance_ratios",
                        lambda *args: shapes.append((out := ratios(*args)).shape) or out)
    assert validation.stretched_bond_ratio(z, r) == pytest.approx(
        np.median(validation.covalent_distance_ratios(ethanol.numbers, ethanol.positions / 0.529177).min(axis=1)),
        rel=1e-12)
    assert shapes[0] == (validation.LENGTH_UNIT_SAMPLE, 2250)


def test_nve_energy_drift_stops_and_saves_the_last_good_frame(system, tmp_path):
    """At 10 fs (beyond Verlet's stability for C–H stretches) the conserved energy moves by ~10 eV/atom;
    on main the run finished with exit 0. The first frame beyond 20 meV/atom stops it."""
    model, params, atoms = system
    out = tmp_path / "hot.xyz"
    with pytest.raises(EnergyConservationError, match=r"conserved energy moved .* meV/atom .* energy_tolerance=20"):
        simulate(model, params, atoms, steps=40, save_every=2, chunk_frames=20, timestep_fs=10.0, dtype="float64",
                 out=str(out))
    written = ase.io.read(out, index=":") if out.exists() else []  # no frame kept: no file
    last = ase.io.read(f"{out}.last_good.xyz")
    assert last.info["step"] == 2 * len(written) < 40
    # each written frame is within 20 meV/atom of the start, so within 40 of each other
    conserved = np.array([frame.info["conserved_eV"] for frame in written])
    assert len(conserved) == 0 or 1e3 * np.ptp(conserved) / len(atoms) <= 40.0


def test_a_run_stopped_before_its_first_frame_leaves_no_empty_trajectory(system, tmp_path):
    """--timestep 5 --steps 100 --save-every 10 stopped (exit 4) before its first saved frame and left a 0-byte OUT and
    OUT.jsonl (ase.io.read: 'Empty file'); a stop on uncertainty already removed them, now a blow-up or an energy
    drift does too. The last good frame (the start) is still saved."""
    model, params, atoms = system
    out = tmp_path / "hot.xyz"
    with pytest.raises(EnergyConservationError, match=rf"Last good frame \(step 0\) saved to {out}\.last_good\.xyz; "
                                                      rf"the run leaves no {out} nor {out}\.jsonl \(they would hold "
                                                      r"no frame\)$"):
        simulate(model, params, atoms, steps=40, save_every=20, timestep_fs=10.0, dtype="float64", out=str(out))
    assert sorted(path.name for path in tmp_path.iterdir()) == ["hot.xyz.last_good.xyz"]


def test_a_thermostatted_run_whose_conserved_quantity_drifts_warns_and_its_note_names_the_timestep(system):
    """Nosé–Hoover at 2.5 fs on ethanol drifted +68 meV/atom/ps, Langevin +95, CSVR +132 (0.5 fs: -0.002..-0.014),
    and the runs ended without a word (only NVE checked its energy); CSVR's temperature note blamed a start not
    yet in equilibrium. Now a warning (not a stop) names the deviation, the drift and the timestep, and the note
    blames the timestep; at 0.5 fs neither appears."""
    import warnings

    model, params, atoms = system
    run = dict(ensemble="csvr", thermostat_time_fs=50.0, save_every=10, dtype="float64")
    with pytest.warns(RuntimeWarning, match=r"^csvr conserved quantity not conserved: it moved up to [\d.e+]+ meV/atom "
                                            r"from its start value \(more than the 20 meV/atom at which NVE stops, "
                                            r"first at step \d+; drift \+[\d.e+]+ meV/atom/ps\): timestep_fs=5 fs is "
                                            r"too long for this model"):
        report = simulate(model, params, atoms, timestep_fs=5.0, steps=40, **run)
    assert report.conserved_deviation_meV_per_atom > 20.0
    note = report.temperature_note()
    assert "the timestep is too long for this model" in note and "equilibrium" not in note
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        calm = simulate(model, params, atoms, timestep_fs=0.5, steps=20, **run)
    assert not [w for w in caught if "conserved quantity not conserved" in str(w.message)]
    assert calm.conserved_deviation_meV_per_atom is None


def test_cli_restart_checks_ensemble_and_model(system, tmp_path, capsys):
    """MD checkpoints record their ensemble and model. On main a restart with the default --ensemble nve went on
    with a Langevin run's state in NVE, and one with another --checkpoint went on with that model, silently;
    an explicit --ensemble switch is allowed with a warning."""
    model, params, atoms = system
    save_checkpoint(tmp_path / "model", model, params)
    save_checkpoint(tmp_path / "other", model, perturbed_params(params, 0.01, seed=5))
    ase.io.write(tmp_path / "start.xyz", atoms)
    common = ["--geometry", str(tmp_path / "start.xyz"), "--steps", "10", "--save-every", "5", "--float64"]
    langevin = common + ["--checkpoint", str(tmp_path / "model"), "--ensemble", "langevin"]
    state = tmp_path / "state.npz"
    assert main(langevin + ["--friction", "0.02", "--md-checkpoint", str(state)]) == 0
    assert main(common + ["--checkpoint", str(tmp_path / "model"), "--restart", str(state)]) == 2
    assert (f"--restart {state} continues a langevin run, not --ensemble nve (the default)"
            in capsys.readouterr().err)
    # Asked for explicitly, the switch is a workflow (equilibrate, then NVE): it runs, with a warning.
    with pytest.warns(UserWarning, match="was a langevin run and continues as ensemble nve"):
        assert main(common + ["--checkpoint", str(tmp_path / "model"), "--restart", str(state),
                              "--ensemble", "nve"]) == 0
    other = common + ["--checkpoint", str(tmp_path / "other"), "--ensemble", "langevin", "--restart", str(state)]
    assert main(other) == 2
    assert f"was written by a run of another model than --checkpoint {tmp_path / 'other'}" in capsys.readouterr().err
    assert main(langevin + ["--restart", str(state)]) == 0
    with np.load(state) as saved:  # a checkpoint from before the records still loads
        np.savez(tmp_path / "old.npz", **{key: saved[key] for key in saved.files if key not in ("ensemble", "model")})
    assert main(langevin + ["--restart", str(tmp_path / "old.npz")]) == 0


def test_npt_of_an_isolated_molecule_is_refused_by_keyword(system):
    """From Python the keyword (the CLI names --ensemble npt, tests/test_cli_errors.py), before anything compiles."""
    model, params, atoms = system
    with pytest.raises(PhysNetInputError, match=r"^ensemble=npt needs a fully periodic cell, but the start geometry "
                                                r"is isolated \(no pbc\): .* or choose another ensemble$"):
        simulate(model, params, atoms, ensemble="npt", steps=10, save_every=5)


def test_stop_without_out_writes_no_file(system, tmp_path, monkeypatch):
    """On main a run without out wrote md_last_good.xyz into the working directory, unasked and unannounced."""
    model, params, atoms = system
    monkeypatch.chdir(tmp_path)
    with pytest.raises(EnergyConservationError, match=r"Last good frame \(step \d+\) not saved \(the run has no --out"):
        simulate(model, params, atoms, steps=40, save_every=2, chunk_frames=20, timestep_fs=10.0, dtype="float64")
    assert not any(tmp_path.iterdir())


def test_restart_truncates_frames_written_after_the_md_checkpoint(system, tmp_path):
    """A run killed after its checkpoint at step 10 had written steps 5..20; the restart must not append
    15, 20 after them again (on main: 5, 10, 15, 20, 15, 20)."""
    model, params, atoms = system
    out = tmp_path / "traj.xyz"
    for step in (5, 10, 15, 20):
        frame = atoms.copy()
        frame.info["step"] = step
        ase.io.write(out, frame, format="extxyz", append=True)
    np.savez(tmp_path / "state.npz", positions=atoms.positions, momenta=np.zeros((len(atoms), 3)),
             numbers=atoms.numbers, step=10, heat=0.0)
    # a PhysNetInputWarning (on main a log record, which the CLI printed as WARNING:physnetjax.md.driver:...)
    with pytest.warns(PhysNetInputWarning, match=r"traj\.xyz: dropped 2 frame\(s\) written after the MD checkpoint "
                                                 r"\(step 10\) before continuing"):
        simulate(model, params, atoms, steps=10, save_every=5, dtype="float64", out=str(out),
                 restart=str(tmp_path / "state.npz"))
    steps = [f.info["step"] for f in ase.io.read(out, index=":")]
    assert steps == [5, 10, 15, 20]


@pytest.mark.parametrize("behind, message", [
    ("trajectory", r"traj\.xyz: its last frame is step 10 but the restart is at step 20: the frames between are "
                   r"missing .*move it away to start a new trajectory$"),
    ("log", r"traj\.xyz\.jsonl: its last record is step 10 but the restart is at step 20: the records between are "
            r"missing .*move it away to start a new log$")])
def test_restart_into_a_trajectory_or_log_behind_the_checkpoint_is_refused(system, tmp_path, monkeypatch, behind,
                                                                           message):
    """A trajectory cut at step 10 (or restored from an older copy) while the checkpoint is at step 20: on main the
    restart appended 25, 30 after 5, 10, a silent gap (the probe: steps 10..100, 410, 420), and the log disagreed.
    Now refused before either file is changed, and before the dynamics are built and compiled (which came first,
    10-20 s of the md command)."""
    from physnetjax.md import driver

    def build_dynamics(*args, **kwargs):
        raise AssertionError("the dynamics were built before the restart was refused")

    monkeypatch.setattr(driver, "build_dynamics", build_dynamics)
    model, params, atoms = system
    out = tmp_path / "traj.xyz"
    steps = (5, 10) if behind == "trajectory" else (5, 10, 15, 20)
    for step in steps:
        frame = atoms.copy()
        frame.info["step"] = step
        ase.io.write(out, frame, format="extxyz", append=True)
    log_steps = (5, 10) if behind == "log" else (5, 10, 15, 20, 25)
    (tmp_path / "traj.xyz.jsonl").write_text("".join(f'{{"step": {step}}}\n' for step in log_steps))
    before = out.read_bytes(), (tmp_path / "traj.xyz.jsonl").read_bytes()
    np.savez(tmp_path / "state.npz", positions=atoms.positions, momenta=np.zeros((len(atoms), 3)),
             numbers=atoms.numbers, step=20, heat=0.0)
    with pytest.raises(PhysNetInputError, match=message):
        simulate(model, params, atoms, steps=10, save_every=5, dtype="float64", out=str(out),
                 restart=str(tmp_path / "state.npz"))
    assert (out.read_bytes(), (tmp_path / "traj.xyz.jsonl").read_bytes()) == before


@pytest.mark.parametrize("damage, message", [
    ("frame", r"traj\.xyz: cannot read the trajectory the restart continues \(.*\); the file is damaged"),
    ("line", r"traj\.xyz\.jsonl, line 2: not a JSON record \(.*\); the file is damaged"),
    ("step", r"traj\.xyz\.jsonl, record 1: no integer 'step' \(received \"5\"\); the file was edited")])
def test_restart_names_a_damaged_trajectory_or_log(system, tmp_path, damage, message):
    """A run killed while writing leaves a cut last frame or log line. On main the restart stopped with ASE's
    'Frame has 7 atoms, expected 9' or json's 'Unterminated string', naming neither file; an edited step was an
    internal KeyError or TypeError."""
    model, params, atoms = system
    out = tmp_path / "traj.xyz"
    for step in (5, 10):
        frame = atoms.copy()
        frame.info["step"] = step
        ase.io.write(out, frame, format="extxyz", append=True)
    log = ['{"step": 5}', '{"step": 10}']
    if damage == "frame":
        out.write_bytes(out.read_bytes()[:-60])
    elif damage == "line":
        log[1] = log[1][:6]
    else:
        log[0] = '{"step": "5"}'
    (tmp_path / "traj.xyz.jsonl").write_text("\n".join(log) + "\n")
    np.savez(tmp_path / "state.npz", positions=atoms.positions, momenta=np.zeros((len(atoms), 3)),
             numbers=atoms.numbers, step=10, heat=0.0)
    with pytest.raises(PhysNetInputError, match=message):
        simulate(model, params, atoms, steps=10, save_every=5, dtype="float64", out=str(out),
                 restart=str(tmp_path / "state.npz"))


def test_restart_with_an_edited_state_is_refused(system, tmp_path):
    """On main a restart file whose momenta (or positions) were changed after the run wrote it continued silently
    (here at 4× the kinetic energy), as if it were that run; the written state now carries a SHA-256."""
    model, params, atoms = system
    state = tmp_path / "state.npz"
    kwargs = dict(steps=10, save_every=5, chunk_frames=2, timestep_fs=0.5, dtype="float64", temperature_K=300.0)
    simulate(model, params, atoms, checkpoint_path=str(state), **kwargs)
    with np.load(state) as saved:
        arrays = {key: saved[key] for key in saved.files}
    assert "state_sha256" in arrays
    np.savez(tmp_path / "edited.npz", **dict(arrays, momenta=2.0 * arrays["momenta"]))
    with pytest.raises(ValueError, match=r"restart file .*edited.npz fails its SHA-256 check: its positions, "
                                         r"momenta or thermostat state were changed"):
        simulate(model, params, atoms, restart=str(tmp_path / "edited.npz"), **kwargs)
    np.savez(tmp_path / "unchecked.npz", **{key: value for key, value in arrays.items() if key != "state_sha256"})
    for path in (state, tmp_path / "unchecked.npz"):
        simulate(model, params, atoms, restart=str(path), **kwargs)


@pytest.mark.parametrize("name, value, message", [
    ("numbers", "reversed", "holds a different system: atomic numbers"),
    ("step", -1, r"step must be an integer >= 0, received -1"),
    ("step", 2.5, r"step must be an integer >= 0, received 2.5"),
    ("momenta", "nan", r"momenta must be finite numbers of shape \(9, 3\)"),
    ("momenta", "short", r"momenta must be finite numbers of shape \(9, 3\)"),
])
def test_restart_names_a_state_of_another_system_or_a_bad_step_or_momenta(system, tmp_path, name, value, message):
    model, params, atoms = system
    n = len(atoms)
    momenta = np.zeros((n, 3))
    values = {"reversed": atoms.numbers[::-1], "nan": np.where(np.arange(n)[:, None] == 2, np.nan, momenta),
              "short": momenta[:-1]}
    arrays = dict(positions=atoms.positions, momenta=momenta, numbers=atoms.numbers, step=10,
                  key=np.zeros(2, np.uint32), origin=np.zeros(3))
    assert n == 9 and atoms.numbers.tolist() != atoms.numbers[::-1].tolist()
    np.savez(tmp_path / "state.npz", **{**arrays, name: values.get(value, value)})
    with pytest.raises(PhysNetInputError, match=rf"restart file .*state\.npz.*{message}"):
        simulate(model, params, atoms, ensemble="langevin", steps=10, save_every=5, dtype="float64",
                 restart=str(tmp_path / "state.npz"))


@pytest.mark.parametrize("name, value", [("origin", np.zeros(2)), ("origin", np.full(3, np.nan)),
                                         ("key", np.array("abc")), ("masses", np.ones(2))])
def test_restart_names_a_bad_origin_or_key_of_an_unchecked_state(system, tmp_path, name, value):
    """A restart file without a state_sha256 (written before it existed) is not checked by it. On main an origin
    of the wrong shape stopped with numpy's 'operands could not be broadcast together', a NaN origin with a
    'positions contain NaN' that named no file, and a text key was an internal TypeError."""
    model, params, atoms = system
    n = len(atoms)
    arrays = dict(positions=atoms.positions, momenta=np.zeros((n, 3)), numbers=atoms.numbers, step=10,
                  key=np.zeros(2, np.uint32), origin=np.zeros(3))
    np.savez(tmp_path / "state.npz", **{**arrays, name: value})
    with pytest.raises(PhysNetInputError, match=rf"restart file .*state\.npz: {name} must be finite "
                                                r".* numbers of shape \("):
        simulate(model, params, atoms, ensemble="langevin", steps=10, save_every=5, dtype="float64",
                 restart=str(tmp_path / "state.npz"))


def test_float32_md_far_from_the_origin_runs_as_at_the_origin(system, tmp_path):
    """On main float32 MD integrated in the user's coordinates: 1000 Å out one float32 ulp is 6e-5 Å and each
    position update of ~1e-3 Å lost up to half of it, so ethanol's path left the one at the origin by 4e-3 Å
    in 200 steps. Isolated runs now integrate about the start centroid and write the user's frame: the two
    start states agree to one float32 ulp (≤ 2.4e-7 Å at |r − c| < 2 Å), which 200 steps may amplify but
    not to 1e-5 Å."""
    model, params, atoms = system
    shift = np.array([1000.0, -1000.0, 1000.0])
    far = atoms.copy()
    far.positions = atoms.positions + shift
    kwargs = dict(steps=200, save_every=40, chunk_frames=5, timestep_fs=0.5, dtype="float32", temperature_K=300.0)
    simulate(model, params, atoms, out=str(tmp_path / "near.xyz"), **kwargs)
    simulate(model, params, far, out=str(tmp_path / "far.xyz"), checkpoint_path=str(tmp_path / "far.npz"), **kwargs)
    near_frames, far_frames = (ase.io.read(tmp_path / name, index=":") for name in ("near.xyz", "far.xyz"))
    assert len(near_frames) == len(far_frames) == 5
    for a, b in zip(near_frames, far_frames):
        np.testing.assert_allclose(b.positions - shift, a.positions, atol=1e-5)
        np.testing.assert_allclose(b.get_forces(), a.get_forces(), atol=1e-4)
        np.testing.assert_allclose(b.get_potential_energy(), a.get_potential_energy(), atol=1e-4)
    with np.load(tmp_path / "far.npz") as saved:  # the MD checkpoint is in the user's frame too, with its origin
        np.testing.assert_allclose(saved["positions"], far_frames[-1].positions, atol=1e-5)
        np.testing.assert_allclose(saved["origin"], far.positions.mean(axis=0), atol=1e-12)


def test_a_drifting_start_geometry_loses_its_total_momentum_with_a_warning(system):
    """Momenta of a rigid translation (0.01 Å/fs): the whole drift was counted as heat over 3N − 3 degrees of freedom
    (~230 K reported for a molecule that is internally at rest)."""
    model, params, atoms = system
    atoms = atoms.copy()
    drift = np.array([0.01, 0.0, 0.0])
    atoms.set_momenta(momenta_to_ase(atoms.get_masses()[:, None] * drift))
    with pytest.warns(PhysNetInputWarning, match=r"total momentum of \[0\.46\d+, 0\.0, 0\.0\] amu·Å/fs \(the centre "
                      r"of mass drifting at 0\.01 Å/fs, 2\d\d K of the kinetic temperature over 24 degrees"):
        report = simulate(model, params, atoms, steps=10, save_every=10, dtype="float64", temperature_K=300.0)
    at_rest = atoms.copy()
    at_rest.set_momenta(np.zeros((len(atoms), 3)))
    cold = simulate(model, params, at_rest, steps=10, save_every=10, dtype="float64", temperature_K=0.0)
    assert report.mean_temperature_K == pytest.approx(cold.mean_temperature_K, abs=1e-9)


def test_cli_says_the_start_velocities_are_the_geometry_momenta_not_drawn_at_the_temperature(system, tmp_path,
                                                                                             capsys):
    """A geometry with momenta: --temperature 300 drew nothing, yet the report said nothing (a 90 K start read as a
    300 K run)."""
    model, params, atoms = system
    save_checkpoint(tmp_path / "model", model, params)
    moving = atoms.copy()
    moving.set_momenta(momenta_to_ase(np.random.default_rng(0).normal(scale=0.05, size=(len(atoms), 3))))
    ase.io.write(tmp_path / "moving.extxyz", moving)
    ase.io.write(tmp_path / "still.extxyz", atoms)
    common = ["--checkpoint", str(tmp_path / "model"), "--temperature", "300", "--steps", "10", "--save-every", "10",
              "--float64"]
    with pytest.warns(PhysNetInputWarning, match="total momentum"):
        assert main(common + ["--geometry", str(tmp_path / "moving.extxyz")]) == 0
    line = [text for text in capsys.readouterr().out.splitlines() if text.startswith("start velocities:")]
    assert len(line) == 1 and line[0].endswith("K), not drawn at --temperature")
    assert main(common + ["--geometry", str(tmp_path / "still.extxyz"), "--ensemble", "langevin"]) == 0
    assert "start velocities:" not in capsys.readouterr().out


@pytest.mark.parametrize("mass", [0.0, -1.0, np.nan])
def test_bad_masses_of_the_start_geometry_are_named_not_reported_as_a_blow_up(system, tmp_path, capsys, mass):
    """A masses column with 0, -1 or NaN in the extxyz file: md ran, and reported a blow-up (exit 4)."""
    model, params, atoms = system
    save_checkpoint(tmp_path / "model", model, params)
    weighed = atoms.copy()
    masses = weighed.get_masses()
    masses[1] = mass
    weighed.set_masses(masses)
    ase.io.write(tmp_path / "weighed.extxyz", weighed)
    assert main(["--checkpoint", str(tmp_path / "model"), "--geometry", str(tmp_path / "weighed.extxyz"),
                 "--steps", "10", "--save-every", "10"]) == 2
    err = capsys.readouterr().err
    assert (f"the start geometry's masses (atoms.get_masses(): a masses array of the Atoms or of its file) must be "
            f"finite and > 0 amu; received [{mass}] at atom indices [1]") in err, err


def test_ase_constraints_on_the_start_geometry_are_refused_not_ignored(system, tmp_path, capsys):
    """FixAtoms([0, 1, 2]): the 'fixed' atoms moved 0.05 Å in 20 steps without a word (also a move_mask column of an
    extxyz file, which ASE reads as a constraint)."""
    from ase.constraints import FixAtoms

    model, params, atoms = system
    fixed = atoms.copy()
    fixed.set_constraint(FixAtoms([0, 1, 2]))
    with pytest.raises(PhysNetInputError, match=r"carries ASE constraints \(FixAtoms\), which this MD does not apply"):
        simulate(model, params, fixed, steps=10, save_every=10)
    save_checkpoint(tmp_path / "model", model, params)
    ase.io.write(tmp_path / "fixed.extxyz", fixed)
    assert "move_mask" in (tmp_path / "fixed.extxyz").read_text()
    assert main(["--checkpoint", str(tmp_path / "model"), "--geometry", str(tmp_path / "fixed.extxyz"),
                 "--steps", "10", "--save-every", "10"]) == 2
    assert "which this MD does not apply" in capsys.readouterr().err


def test_a_restart_of_another_cell_or_periodicity_is_refused(system, tmp_path):
    """A checkpoint of a run in a 14 Å cell restarted with the isolated molecule, or in a 9 Å cell, and one of an
    isolated run restarted in a cell: each continued silently as the other system."""
    model, params, atoms = system
    boxed = atoms.copy()
    boxed.cell, boxed.pbc = np.eye(3) * 14.0, True
    boxed.center()
    run = dict(steps=10, save_every=10, ensemble="langevin")
    simulate(model, params, boxed, checkpoint_path=tmp_path / "boxed.npz", **run)
    simulate(model, params, atoms, checkpoint_path=tmp_path / "alone.npz", **run)
    alone = ase.Atoms(numbers=boxed.numbers, positions=boxed.positions)
    with pytest.raises(PhysNetInputError, match=r"boxed\.npz was run in a periodic cell, but the geometry is isolated"):
        simulate(model, params, alone, restart=tmp_path / "boxed.npz", **run)
    smaller = boxed.copy()
    smaller.cell = np.eye(3) * 9.0
    with pytest.raises(PhysNetInputError, match=r"boxed\.npz was run in the cell \[\[14\.0, 0\.0, 0\.0\], .* the "
                                                r"geometry has \[\[9\.0, 0\.0, 0\.0\]"):
        simulate(model, params, smaller, restart=tmp_path / "boxed.npz", **run)
    with pytest.raises(PhysNetInputError, match=r"alone\.npz was run as an isolated molecule, but the geometry is "
                                                r"periodic"):
        simulate(model, params, boxed, restart=tmp_path / "alone.npz", **run)
    assert simulate(model, params, boxed, restart=tmp_path / "boxed.npz", **run).steps == 10


@pytest.mark.filterwarnings("ignore:MD start geometry. total charge -1 e given to a model without charges")
def test_frames_and_restart_files_record_the_total_charge(system, tmp_path, capsys):
    """An anion's MD wrote frames without its charge: read back (calculator, eval, a new MD) they were the neutral
    molecule, 2 eV off with a charge model, without a word. A restart at another charge continued silently, and
    md --total-charge overrode the geometry file's charge without the warning the other tools give."""
    model, params, atoms = system
    anion = atoms.copy()
    anion.info["charge"] = -1
    run = dict(steps=10, save_every=5, ensemble="langevin")
    simulate(model, params, anion, out=str(tmp_path / "ion.extxyz"), checkpoint_path=tmp_path / "ion.npz", **run)
    assert [frame.info["charge"] for frame in ase.io.read(tmp_path / "ion.extxyz", index=":")] == [-1.0, -1.0]
    neutral = anion.copy()
    neutral.info["charge"] = 0
    with pytest.raises(PhysNetInputError, match=r"ion\.npz was run at total charge -1 e, the geometry \(or "
                                                r"--total-charge\) gives 0 e"):
        simulate(model, params, neutral, restart=tmp_path / "ion.npz", **run)
    assert simulate(model, params, anion, restart=tmp_path / "ion.npz", **run).steps == 10
    save_checkpoint(tmp_path / "model", model, params)
    ase.io.write(tmp_path / "anion.extxyz", anion)
    with pytest.warns(PhysNetInputWarning, match=r"info\['charge'\] is -1 e but --total-charge is 0 e; "
                                                 r"--total-charge is used"):
        assert main(["--checkpoint", str(tmp_path / "model"), "--geometry", str(tmp_path / "anion.extxyz"),
                     "--total-charge", "0", "--steps", "10", "--save-every", "5",
                     "--out", str(tmp_path / "cli.extxyz")]) == 0
    assert [frame.info["charge"] for frame in ase.io.read(tmp_path / "cli.extxyz", index=":")] == [0.0, 0.0]


def test_a_restart_that_would_pass_the_last_step_is_refused(system, tmp_path, monkeypatch):
    """md --steps 2**32 ended in a raw OverflowError (the device counts steps in int32): steps are bounded, and so is
    a restart's start step plus its steps (MAX_STEP lowered here to reach it in a few steps)."""
    from physnetjax.md import driver

    model, params, atoms = system
    simulate(model, params, atoms, steps=10, save_every=5, checkpoint_path=tmp_path / "state.npz")
    monkeypatch.setattr(driver, "MAX_STEP", 15)
    with pytest.raises(PhysNetInputError, match=r"state\.npz is at step 10: steps 10 more would pass step 15 \(steps "
                                                r"are counted in 32-bit integers on the device\)"):
        simulate(model, params, atoms, steps=10, save_every=5, restart=tmp_path / "state.npz")
    simulate(model, params, atoms, steps=5, save_every=5, restart=tmp_path / "state.npz")


def test_start_momenta_that_are_not_finite_or_absurdly_hot_are_refused(system):
    """Momenta of 1e6 amu·Å/fs (6e15 K): md ran and finished with exit 0; NaN momenta ended as a blow-up."""
    model, params, atoms = system
    hot = atoms.copy()
    hot.set_momenta(momenta_to_ase(np.random.default_rng(0).normal(scale=1e6, size=(len(atoms), 3))))
    with pytest.raises(PhysNetInputError, match=r"momenta have a kinetic temperature of \d\.\d+e\+1\d K, above "
                                                r"the 1e\+06 K MD accepts .*other units than ASE's"):
        simulate(model, params, hot, steps=10, save_every=10)
    momenta = np.random.default_rng(0).normal(scale=0.05, size=(len(atoms), 3))
    momenta[3, 1] = np.nan
    broken = atoms.copy()
    broken.set_momenta(momenta_to_ase(momenta))
    with pytest.raises(PhysNetInputError, match=r"momenta are NaN or Inf at atom indices \[3\]"):
        simulate(model, params, broken, steps=10, save_every=10)
    warm = atoms.copy()
    warm.set_momenta(momenta_to_ase(np.sqrt(atoms.get_masses()[:, None] * 0.002)
                                    * np.random.default_rng(1).normal(size=(len(atoms), 3))))
    with pytest.warns(PhysNetInputWarning, match="total momentum"):
        report = simulate(model, params, warm, steps=10, save_every=10, ensemble="langevin")
    assert report.geometry_momenta_temperature_K is not None and 500 < report.geometry_momenta_temperature_K < 5000


def test_cli_warns_that_it_starts_from_the_last_frame_of_a_trajectory(system, tmp_path):
    """A geometry file of 2 frames: the run started from the last one without a word (spectra take the first)."""
    model, params, atoms = system
    save_checkpoint(tmp_path / "model", model, params)
    shifted = atoms.copy()
    shifted.positions[0] += 0.05
    ase.io.write(tmp_path / "two.extxyz", [atoms, shifted])
    with pytest.warns(PhysNetInputWarning, match=r"two\.extxyz holds 2 frames: MD starts from the last one "
                      r"\(frame 2\)"):
        assert main(["--checkpoint", str(tmp_path / "model"), "--geometry", str(tmp_path / "two.extxyz"),
                     "--steps", "10", "--save-every", "10", "--float64"]) == 0


def test_restart_with_other_masses_is_refused(system, tmp_path, capsys):
    """On main the MD checkpoint held no masses: a restart from a geometry whose extxyz masses column made the H atoms
    D went on with the H momenta on the D masses (half the velocities, another run) without a word."""
    model, params, atoms = system
    save_checkpoint(tmp_path / "model", model, params)
    heavy = atoms.copy()
    heavy.set_masses(np.where(atoms.numbers == 1, 2.014, atoms.get_masses()))
    ase.io.write(tmp_path / "start.extxyz", atoms)
    ase.io.write(tmp_path / "heavy.extxyz", heavy)
    state = tmp_path / "state.npz"
    common = ["--checkpoint", str(tmp_path / "model"), "--steps", "10", "--save-every", "5", "--float64"]
    assert main(common + ["--geometry", str(tmp_path / "start.extxyz"), "--md-checkpoint", str(state)]) == 0
    with np.load(state) as saved:
        arrays = {key: saved[key] for key in saved.files}
    np.testing.assert_array_equal(arrays["masses"], atoms.get_masses())
    assert main(common + ["--geometry", str(tmp_path / "heavy.extxyz"), "--restart", str(state)]) == 2
    hydrogen = int(np.flatnonzero(atoms.numbers == 1)[0])
    assert (f"restart file {state} holds other masses: atom {hydrogen} (H) 1.008 amu instead of the geometry's "
            "2.014 amu, atom" in capsys.readouterr().err)
    assert main(common + ["--geometry", str(tmp_path / "start.extxyz"), "--restart", str(state)]) == 0
    # a restart file from before the masses were kept (and so without a checksum over them) loads as before
    np.savez(tmp_path / "old.npz", **{key: value for key, value in arrays.items()
                                      if key not in ("masses", "state_sha256")})
    simulate(model, params, heavy, steps=10, save_every=5, dtype="float64", restart=str(tmp_path / "old.npz"))


def _head_on_hydrogens(speed_A_per_fs: float, offset: float) -> ase.Atoms:
    """Two H atoms 1.5 Å apart flying at each other (impact parameter ``offset`` Å)."""
    atoms = ase.Atoms("HH", positions=[[0.0, 0.0, 0.0], [1.5, offset, 0.0]])
    atoms.set_velocities(np.array([[speed_A_per_fs, 0, 0], [-speed_A_per_fs, 0, 0]]) / ase.units.fs)
    return atoms


def _thermostatted_report(mean_K, time_ps, halves=None, relaxation_fs=50.0, dof=2000, ensemble="langevin",
                          frames=1000) -> MDReport:
    return MDReport(steps=1000, time_ps=time_ps, num_atoms=dof // 3 + 1, drift_meV_per_atom_per_ps=0.0,
                    fluctuation_meV_per_atom=0.0, mean_temperature_K=mean_K, steps_per_second=1.0,
                    compile_seconds=0.0, reallocations=0, out=None, ensemble=ensemble, degrees_of_freedom=dof,
                    target_temperature_K=300.0, kinetic_relaxation_fs=relaxation_fs,
                    half_temperatures_K=halves or (mean_K, mean_K), frames=frames)


def test_the_mean_temperature_scatter_counts_no_more_samples_than_saved_frames():
    """A 5 ps Langevin run (friction 0.5 fs^-1: tau = 1 fs) of ethanol (N_f = 27) saved 50 frames: the mean of 50
    frames scatters by 300 * sqrt(2/27) / sqrt(50) = 11.55 K, not by the 2500 samples' 1.63 K that L / (2 tau)
    gives; means of 290.8 and 280.7 K (three seeds of the probe) got 'has not reached equilibrium' notes."""
    assert _thermostatted_report(280.7, 5.0, relaxation_fs=1.0, dof=27, frames=50).temperature_note() is None
    note = _thermostatted_report(253.0, 5.0, relaxation_fs=1.0, dof=27, frames=50).temperature_note()
    assert "(±12 K over 5 ps" in note  # 4 sigma = 46.2 K < 47 K


def test_a_thermostatted_mean_temperature_beyond_its_scatter_gets_a_note():
    """sigma = T sqrt(2/N_f) / sqrt(max(1, L / (2 tau))): 300 K, N_f = 2000, L = 10 ps, tau = 50 fs -> 100
    independent samples, sigma = 300 * sqrt(0.001) / 10 = 0.9487 K; a note beyond 4 sigma = 3.795 K. A half
    (50 samples) scatters by 1.3416 K, the difference of the halves by sqrt(2) * 1.3416 = 1.8974 K: halves more
    than 4 * 1.8974 = 7.59 K apart have not reached equilibrium."""
    assert _thermostatted_report(303.7, 10.0).temperature_note() is None
    note = _thermostatted_report(296.2, 10.0, (292.5, 299.9)).temperature_note()
    assert note == ("note: the mean temperature is -3.8 K from the thermostat's 300.0 K, more than 4 times its "
                    "expected scatter (±0.95 K over 10 ps, 2000 degrees of freedom, kinetic energy relaxing in "
                    "50 fs); "
                    "its first half averaged 292.5 K, its second 299.9 K: the thermostat does not hold the target: "
                    "heat from the integration (a smaller timestep) or from where the model extrapolates")
    assert "has not reached equilibrium" in _thermostatted_report(296.2, 10.0, (292.5, 300.1)).temperature_note()
    # halves as far apart, the second further from the target: heating away from it, no start explains that (an
    # NPT run of an ethanol box, 452 then 526 K, was told it had started far from equilibrium)
    note = _thermostatted_report(296.2, 10.0, (300.1, 292.5)).temperature_note()
    assert note.endswith("its first half averaged 300.1 K, its second 292.5 K: the thermostat does not hold the "
                         "target (the temperature moves away from it: the second half is further off): heat from "
                         "the integration (a smaller timestep) or from where the model extrapolates")
    assert ("the thermostat does not hold the target: a Nosé-Hoover chain that does not reach every mode"
            in _thermostatted_report(296.2, 10.0, (292.5, 299.9), ensemble="nvt-nhc").temperature_note())
    # 0.1 ps < 5 tau = 0.25 ps: one independent sample, sigma = 9.487 K, 4 sigma = 37.9 K
    assert _thermostatted_report(337.0, 0.1).temperature_note() is None
    note = _thermostatted_report(338.0, 0.1).temperature_note()
    assert "(±9.5 K over 0.1 ps" in note and "the run has not reached equilibrium with the thermostat" in note


def test_the_target_of_a_ramp_is_its_middle_and_nve_has_none():
    from physnetjax.md.driver import mean_target_temperature_K
    from physnetjax.md.ensembles import EnsembleOptions

    assert mean_target_temperature_K("csvr", EnsembleOptions(temperature_K=300.0, temperature_end_K=500.0)) == 400.0
    assert mean_target_temperature_K("langevin", EnsembleOptions(temperature_K=250.0)) == 250.0
    assert mean_target_temperature_K("nve", EnsembleOptions(temperature_K=250.0)) is None


def _separated_ethanols(atoms, count=8, spacing=12.0) -> ase.Atoms:
    """``count`` copies of ``atoms`` on a line ``spacing`` Å apart (beyond the cutoff): 9 count atoms, one system."""
    copies = ase.Atoms()
    for k in range(count):
        copy = atoms.copy()
        copy.translate([k * spacing, 0.0, 0.0])
        copies += copy
    return copies


@pytest.mark.slow
def test_a_run_still_relaxing_from_its_start_gets_a_note_and_its_equilibrated_continuation_none(system, tmp_path):
    """72 atoms (N_f = 216 without a fixed centre of mass), Langevin at gamma = 0.05/fs (tau = 10 fs): the test
    model's start geometry lies far up its surface, and releasing that energy kept the first 0.25 ps near 700 K,
    so a 1 ps run averaged 403 K for a 300 K thermostat, without a word. Here 0.5 ps: the second half averages
    300 K within 4 sigma = 4 * 300 sqrt(2/216) / sqrt(12.5) = 32.6 K; continued from the last frame (momenta
    kept), the whole run does within 4 * 300 sqrt(2/216) / sqrt(25) = 23.1 K: no note."""
    model, params, atoms = system
    settings = dict(ensemble="langevin", friction=0.05, steps=1000, save_every=10, chunk_frames=50,
                    temperature_K=300.0, dtype="float64")
    sigma_per_frame = 300.0 * np.sqrt(2 / 216)
    relaxing = simulate(model, params, _separated_ethanols(atoms), seed=1, out=str(tmp_path / "a.traj"), **settings)
    first, second = relaxing.half_temperatures_K
    # independent of the driver's bookkeeping: ASE's kinetic energy of the written frames (momenta kept in .traj)
    frames = ase.io.read(tmp_path / "a.traj", index=":")
    kinetic_K = np.array([2 * frame.get_kinetic_energy() / (216 * BOLTZMANN) for frame in frames])  # saved frames
    assert len(kinetic_K) == 100
    np.testing.assert_allclose([first, second], [kinetic_K[:50].mean(), kinetic_K[50:].mean()], rtol=1e-6)
    assert first > 400.0 and abs(second - 300.0) < 4 * sigma_per_frame / np.sqrt(12.5)
    assert relaxing.target_temperature_K == 300.0 and relaxing.kinetic_relaxation_fs == pytest.approx(10.0)
    assert "the run has not reached equilibrium with the thermostat" in relaxing.temperature_note()
    assert relaxing.temperature_note() in relaxing.lines()
    with pytest.warns(PhysNetInputWarning, match="total momentum"):  # Langevin noise left the last frame one
        equilibrated = simulate(model, params, ase.io.read(tmp_path / "a.traj", index=-1), seed=2, **settings)
    assert abs(equilibrated.mean_temperature_K - 300.0) < 4 * sigma_per_frame / np.sqrt(25)
    assert equilibrated.temperature_note() is None


def test_a_close_contact_warns_once_and_the_report_names_the_closest_approach(system, tmp_path):
    """0.39 Å/fs head-on: the atoms pass 0.5 Å and turn at ~0.32 Å; the report's closest approach is the smallest
    distance of the written frames (brute force), the warning names the first frame below 0.5 Å."""
    model, params, _ = system
    out = tmp_path / "collision.xyz"
    with pytest.warns(PhysNetInputWarning, match="MD left the region the model knows") as caught:
        report = simulate(model, params, _head_on_hydrogens(0.39, 0.1), steps=60, save_every=1, timestep_fs=0.05,
                          dtype="float64", max_force=1e6, out=str(out))
    frames = ase.io.read(out, index=":")
    distances = np.array([frame.get_distance(0, 1) for frame in frames])
    first = int(np.argmax(distances < 0.5))
    assert sum("MD left the region" in str(w.message) for w in caught) == 1
    warning = next(w for w in caught if "MD left the region" in str(w.message))
    message = str(warning.message)
    assert warning.category is CloseContactWarning  # its own category, which the learning loop leaves out
    assert f"atoms 0-1 {distances[first]:.4g} Å apart at step {first + 1} (below 0.5 Å" in message
    contact = report.closest_contact
    assert (contact.i, contact.j, contact.step) == (0, 1, int(np.argmin(distances)) + 1)
    np.testing.assert_allclose(contact.distance, distances.min(), atol=1e-6)
    assert 0.1 < contact.distance < 0.5
    assert any(line.startswith("closest approach: atoms 0-1") for line in report.lines())


def test_overlapping_atoms_stop_the_run_like_a_blow_up(system, tmp_path):
    """Without ZBL nothing keeps two H atoms apart: below 0.1 Å the run stops with the last good frame saved."""
    model, params, _ = system
    soft = model.clone(zbl=False)
    out = tmp_path / "overlap.xyz"
    with pytest.warns(PhysNetInputWarning, match="MD left the region"):
        with pytest.raises(MDInstabilityError, match=r"atoms 0-1 0\.0\d+ Å apart at step \d+ \(below 0\.1 Å, "
                                                     "overlapping\\): the model extrapolated far beyond") as stop:
            simulate(soft, params, _head_on_hydrogens(0.39, 0.05), steps=80, save_every=1, timestep_fs=0.05,
                     dtype="float64", max_force=1e6, energy_tolerance=1e9, out=str(out))
    last = ase.io.read(f"{out}.last_good.xyz")
    assert last.get_distance(0, 1) >= 0.1
    assert "Last good frame" in str(stop.value)


def test_an_energy_drift_after_a_close_contact_does_not_blame_the_timestep(system):
    model, params, _ = system
    with pytest.warns(PhysNetInputWarning, match="MD left the region"):
        with pytest.raises(EnergyConservationError, match="by then atoms 0-1 .* Å apart at step .*the model "
                                                          "extrapolates there, which a smaller timestep_fs does not"):
            simulate(model, params, _head_on_hydrogens(0.39, 0.1), steps=60, save_every=1, timestep_fs=0.05,
                     dtype="float64", max_force=1e6, energy_tolerance=8.0)


@pytest.mark.parametrize("keyword, value, message", [
    ("steps", 100.0, r"steps must be an integer >= 1 \(MD steps to run\), received 100.0 \(float\)"),
    ("save_every", 10.0, r"save_every must be an integer >= 1 .*received 10.0 \(float\)"),
    ("chunk_frames", True, r"chunk_frames must be an integer >= 1 .*received True \(bool\)"),
    ("checkpoint_every", 0, r"checkpoint_every must be an integer >= 1 \(chunks between MD checkpoints\), received 0"),
    ("temperature_K", None, r"temperature_K must be a number of K, received None \(NoneType\)"),
    ("temperature_K", "300", r"temperature_K must be a number of K, received '300' \(str\)"),
    ("checkpoint_path", "{tmp}/no_dir/state.npz", r"checkpoint_path .*state.npz: directory .*no_dir does not exist"),
    ("restart", "{tmp}/missing.npz", r"restart file .*missing.npz does not exist"),
])
def test_simulate_names_bad_arguments_before_any_step(system, tmp_path, keyword, value, message):
    """Through the Python API these were raw errors: a ZeroDivisionError (checkpoint_every=0) or a TypeError (steps
    100.0, temperature None) after the first chunk had run, a FileNotFoundError at the first checkpoint after the run
    (a checkpoint path in a missing folder), a bare FileNotFoundError for a missing restart file."""
    model, params, atoms = system
    value = value.format(tmp=tmp_path) if isinstance(value, str) and "{tmp}" in value else value
    with pytest.raises(PhysNetInputError, match=message):
        simulate(model, params, atoms, **dict(dict(steps=20, save_every=10), **{keyword: value}))


def test_simulate_names_params_that_are_no_variables(system):
    """params=None was a TypeError from inside the batching ('argument of type NoneType is not iterable')."""
    model, _, atoms = system
    with pytest.raises(PhysNetInputError, match=r"params must be the model's variables, a dict .*received NoneType"):
        simulate(model, None, atoms, steps=20, save_every=10)


def test_simulate_names_a_start_geometry_that_is_no_atoms(system):
    """A list of one Atoms was "MD needs at least 2 atoms, the start geometry has 1"."""
    model, params, atoms = system
    with pytest.raises(PhysNetInputError, match=r"^atoms must be the start geometry as one ase.Atoms, received list$"):
        simulate(model, params, [atoms], steps=20, save_every=10)


def test_a_nose_hoover_time_of_few_timesteps_warns(system):
    """--thermostat-time 0.5 at --timestep 0.5 ended in 'NaN/Inf in energy, positions or forces' after 40 steps with
    no word on the thermostat; 1 fs ran with a drift of 9.5 meV/atom/ps."""
    import warnings

    model, params, atoms = system
    run = dict(ensemble="nvt-nhc", timestep_fs=0.5, steps=4, save_every=2, dtype="float64")
    with pytest.warns(PhysNetInputWarning, match=r"thermostat_time_fs=2 fs is 4 timesteps: a Nosé-Hoover chain "
                                                 r"oscillates with period π√2 τ, which the integration follows poorly below 10 steps per τ"):
        simulate(model, params, atoms, thermostat_time_fs=2.0, **run)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        simulate(model, params, atoms, thermostat_time_fs=5.0, **run)
    assert not [w for w in caught if "Nosé-Hoover chain oscillates" in str(w.message)]


def test_an_interrupt_before_the_first_frame_leaves_no_empty_trajectory(system, tmp_path):
    """Ctrl-C during compilation left an empty OUT and OUT.jsonl (ase.io.read: 'Empty file'), which look like the
    result of a run; a stop before the first frame already removed them."""
    model, params, atoms = system
    out = tmp_path / "t.xyz"

    def interrupt(done):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        simulate(model, params, atoms, steps=4, save_every=2, out=str(out), progress=interrupt)
    assert not out.exists() and not (tmp_path / "t.xyz.jsonl").exists()


def test_a_model_whose_forces_are_all_zero_warns_before_the_atoms_fly_apart(system):
    """An untrained model (zero output head, no ZBL) gave 'energy drift -9.9e-12 meV/atom/ps' and nothing else while
    ethanol's atoms flew from 3.3 to 126 Å apart in 2 ps; a trained model at the same start does not warn."""
    import warnings

    model, params, atoms = system
    fresh = PhysNet(features=8, max_degree=1, num_iterations=2, num_basis_functions=8, cutoff=4.0, max_atomic_number=9,
                    charges=False, zbl=False, n_res=1)
    run = dict(ensemble="nve", timestep_fs=0.5, steps=4, save_every=2, dtype="float64", temperature_K=300.0)
    with pytest.warns(PhysNetInputWarning, match=r"every force on the start geometry is exactly zero: the model's "
                                                 r"energy does not depend on where the atoms are"):
        simulate(fresh, init_params(fresh, 0), atoms, **run)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        simulate(model, params, atoms, **run)
    assert not [w for w in caught if "exactly zero" in str(w.message)]


@pytest.mark.parametrize("timestep_fs, noted", [(0.5, False), (2.0, True)])
def test_an_nve_energy_fluctuating_like_the_kinetic_energy_notes_the_timestep(tmp_path, timestep_fs, noted):
    """The shipped model's ethanol at 2 fs ran 1 ps within the 20 meV/atom tolerance with an energy fluctuation 0.52
    of the kinetic energy's (0.012 at 0.5 fs), unsaid. The ratio is recomputed from the run's log."""
    from physnetjax import load_checkpoint
    from physnetjax.pretrained import example_geometry_path, example_model_path

    model, params = load_checkpoint(example_model_path())
    atoms = ase.io.read(example_geometry_path())
    out = tmp_path / "nve.xyz"
    report = simulate(model, params, atoms, ensemble="nve", temperature_K=300.0, timestep_fs=timestep_fs, steps=500,
                      save_every=10, seed=1, out=out)
    records = [json.loads(line) for line in Path(f"{out}.jsonl").read_text().splitlines()]
    n = len(atoms)
    kinetic = np.array([r["kinetic_energy_eV"] for r in records]) * 1e3 / n
    energy = np.array([r["conserved_eV"] for r in records]) * 1e3 / n
    t = np.array([r["time_fs"] for r in records])
    about_line = energy - np.polyval(np.polyfit(t, energy, 1), t)
    ratio = np.std(about_line) / np.std(kinetic)
    assert report.kinetic_fluctuation_meV_per_atom == pytest.approx(np.std(kinetic), rel=1e-5)
    # the report's line is fitted through the start frame too, which the log does not hold: 50 vs 51 points
    assert report.fluctuation_meV_per_atom / report.kinetic_fluctuation_meV_per_atom == pytest.approx(ratio, rel=3e-2)
    assert (ratio > 0.1) == noted and report.stop_reason is None
    note = report.integration_note()
    if noted:
        assert note.startswith(f"note: the energy fluctuates by {ratio:.2g} of the kinetic energy's fluctuation")
        assert note.endswith("the timestep 2 fs is long for this model, and a longer run would drift further; halve it")
        assert note in report.lines()
    else:
        assert note is None and ratio < 0.05


def _nve_report(start_potential_above_mean_eV: float) -> MDReport:
    return MDReport(steps=1000, time_ps=1.0, num_atoms=9, drift_meV_per_atom_per_ps=0.0, fluctuation_meV_per_atom=0.0,
                    mean_temperature_K=300.0, steps_per_second=1.0, compile_seconds=0.0, reallocations=0, out=None,
                    drawn_temperature_K=310.0, degrees_of_freedom=24,
                    start_potential_above_mean_eV=start_potential_above_mean_eV)


def test_the_nve_start_note_says_below_when_the_start_potential_energy_lies_under_the_mean():
    """A start geometry 2.118 eV under the run's mean potential energy was noted as '-2.118 eV above its mean'; it
    is '2.118 eV below' now (2 * 2.118 eV / (24 k_B) = 2048.2 K), and one above it still '+... eV above'."""
    below = _nve_report(-2.118).temperature_note()
    assert below.endswith("and the start geometry's potential energy was 2.118 eV below its mean over the run "
                          "(-2048.2 K once shared out as kinetic energy)")
    above = _nve_report(0.04082).temperature_note()
    assert above.endswith("and the start geometry's potential energy was +0.04082 eV above its mean over the run "
                          "(+39.5 K once shared out as kinetic energy)")


def test_a_partly_periodic_start_is_refused_with_the_two_ways_to_run_it(system):
    """A slab (pbc T T F) was refused with 'MD runs only fully periodic or isolated systems' alone. The message now
    names the remedy with the model's reach (4 Å cutoff, zbl within it): a fully periodic cell with vacuum wider
    than 4 Å along c, whose energy the calculator finds equal to the slab's, or ASE's dynamics with the
    calculator; a wire (T F F) is told both open axes."""
    from physnetjax import PhysNetCalculator

    model, params, atoms = system
    slab = atoms.copy()
    slab.cell, slab.pbc = np.eye(3) * 6.0, [True, True, False]
    with pytest.raises(PhysNetInputError) as error:
        simulate(model, params, slab, steps=10, save_every=5)
    assert str(error.value) == (
        "pbc=[True, True, False]: MD runs only fully periodic or isolated systems; for a slab or a wire, make the cell "
        "periodic in all three directions with vacuum along the non-periodic direction(s) wider than 4 Å (the "
        "model's cutoff), e.g. atoms.center(vacuum=4, axis=2); atoms.pbc = True (which leaves 8 Å between the "
        "atoms and their images across the vacuum, so the energies and forces are those of the partly periodic "
        "system), or run ASE's dynamics with physnetjax.PhysNetCalculator, which handles partial PBC")
    boxed = slab.copy()
    boxed.center(vacuum=4.0, axis=2)
    boxed.pbc = True
    energies = []
    for structure in (slab, boxed):
        structure.calc = PhysNetCalculator(model, params, dtype="float64")
        energies.append(structure.get_potential_energy())
    np.testing.assert_allclose(energies[1], energies[0], rtol=0, atol=1e-9)
    wire = slab.copy()
    wire.pbc = [True, False, False]
    with pytest.raises(PhysNetInputError, match=r"^pbc=\[True, False, False\]: .* atoms\.center\(vacuum=4, "
                                                r"axis=\(1, 2\)\); atoms\.pbc = True"):
        simulate(model, params, wire, steps=10, save_every=5)


def test_frames_hold_per_atom_energies_summing_to_the_energy_as_predict_splits_it(system, tmp_path):
    """--atom-energies: each written frame carries the per-atom energies (E0[Z_i] included), which sum to its
    energy and equal predict's split at the frame's positions (float64, an independent path: host batch, no
    neighbor list); without the option the frames hold none, and without --out it is refused."""
    model, params, atoms = system
    model = model.clone(element_energies=tuple(np.linspace(-9.0, -1.0, model.max_atomic_number + 1)))
    out = tmp_path / "run.xyz"
    simulate(model, params, atoms.copy(), steps=20, save_every=10, dtype="float64", out=str(out),
             atom_energies=True)
    frames = ase.io.read(out, ":")
    assert len(frames) == 2
    for frame in frames:
        energies = frame.get_potential_energies()
        # extxyz keeps 8 significant digits: each value within 5e-8 of itself, relative (positions likewise)
        energy = frame.get_potential_energy()
        np.testing.assert_allclose(energies.sum(), energy, rtol=0, atol=1e-7 * (np.abs(energies).sum() + abs(energy)))
        expected = predict(model, params, frame.numbers, frame.positions, dtype="float64")["energies"]
        np.testing.assert_allclose(energies, expected, rtol=1e-7, atol=1e-9)
    assert np.ptp(energies) > 1.0  # the element energies are in, per atom

    simulate(model, params, atoms.copy(), steps=10, save_every=10, dtype="float64", out=str(tmp_path / "plain.xyz"))
    with pytest.raises(Exception, match="energies"):
        ase.io.read(tmp_path / "plain.xyz").get_potential_energies()
    with pytest.raises(PhysNetInputError, match="atom_energies writes the per-atom energies into the frames of out"):
        simulate(model, params, atoms.copy(), steps=10, save_every=10, atom_energies=True)


def test_the_command_line_refuses_atom_energies_without_out(tmp_path, capsys):
    ase.io.write(tmp_path / "start.xyz", ase.Atoms("H2", positions=[[0, 0, 0], [0.74, 0, 0]]))
    assert main(["--geometry", str(tmp_path / "start.xyz"), "--atom-energies"]) == 2
    assert capsys.readouterr().err.strip() == ("python -m physnetjax.md: error: --atom-energies writes the per-atom "
                                               "energies into the frames of --out: give --out, or leave "
                                               "--atom-energies out")
