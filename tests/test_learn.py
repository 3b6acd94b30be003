"""Active-learning loop (issue 16, item 6) on a tiny budget with a stub labeller: interrupted during round 1's
labelling and resumed, round 0 is not retrained and the run ends where an uninterrupted one ends; the
report, plot and state; a run directory with other settings is refused. Slow: uninterrupted equals resumed
frame for frame, and a GFN2-xTB (tblite) run."""

import dataclasses
import json
import re
import time
import warnings
from pathlib import Path

import ase
import ase.io
import numpy as np
import pytest

import physnetjax.learn.loop as learn_loop
from physnetjax.data import bundled_dataset_path, load_dataset
from physnetjax.errors import PhysNetInputError, PhysNetInputWarning
from physnetjax.learn import LearnConfig, run_learning
from physnetjax.learn.config import MODEL_SETTINGS
from physnetjax.learn.frames import labelled_frames, save_frames
from physnetjax.learn.report import report_lines, report_rows
from physnetjax.learn.state import read_state, write_state
from physnetjax.model import PhysNet
from physnetjax.train import TrainConfig

SPRING = 5.0  # eV/Å², stub labeller


def make_stub(reference):
    """E = (k/2) Σ_{i<j} (r_ij − r0_ij)², F_i = −k Σ_j (r_ij − r0_ij) (R_i − R_j)/r_ij (analytic gradient)."""
    r0 = np.linalg.norm(reference[:, None] - reference[None], axis=-1)

    def label(atoms):
        R = atoms.positions
        d = R[:, None] - R[None]
        r = np.linalg.norm(d, axis=-1) + np.eye(len(R))
        deviation = np.where(np.eye(len(R), dtype=bool), 0.0, r - r0)
        return {"E": 0.25 * SPRING * np.sum(deviation**2),
                "F": -SPRING * np.sum((deviation / r)[:, :, None] * d, axis=1)}

    return label


def test_stub_labeller_forces_are_minus_the_energy_gradient():
    bundled = load_dataset(bundled_dataset_path())
    label = make_stub(bundled.R[0, :9])
    atoms = ase.Atoms(numbers=bundled.Z[5, :9], positions=bundled.R[5, :9])
    h, numeric = 1e-5, np.zeros((9, 3))
    for i in range(9):
        for a in range(3):
            for sign in (1, -1):
                moved = atoms.copy()
                moved.positions[i, a] += sign * h
                numeric[i, a] -= sign * label(moved)["E"] / (2 * h)
    np.testing.assert_allclose(label(atoms)["F"], numeric, atol=1e-6)


@pytest.fixture(scope="module")
def stub_data(tmp_path_factory):
    """8 initial and 4 test ethanol geometries of the bundled set, relabelled by the stub."""
    bundled = load_dataset(bundled_dataset_path())
    label = make_stub(bundled.R[0, :9])
    frames = [ase.Atoms(numbers=bundled.Z[k, :9], positions=bundled.R[k, :9]) for k in range(1, 13)]
    data = labelled_frames([a.numbers for a in frames], [a.positions for a in frames],
                           [label(a) for a in frames], 0.0, "stub")
    directory = tmp_path_factory.mktemp("learn-data")
    save_frames(data.subset(np.arange(8)), directory / "initial.npz")
    save_frames(data.subset(np.arange(8, 12)), directory / "test.npz")
    return directory, label


def tiny_config(directory, out, **changes) -> LearnConfig:
    settings = dict(out=str(out), data=str(directory / "initial.npz"), test=str(directory / "test.npz"), rounds=1,
                    select=3, min_rmsd=0.01, temperatures=(300.0,), md_steps=20, save_every=4, ensemble=2,
                    features=8, num_iterations=1, num_basis_functions=8, epochs=2, batch_size=5, valid=2)
    settings.update(changes)
    return LearnConfig(**settings)


class CrashOnce:
    """A labeller that fails on its first call after the start's checks of the starting and test labels (two calls
    each, physnetjax.learn.inputs): an interruption in the middle of round 1's labelling."""

    def __init__(self, label, checks: int = 4):
        self.label, self.calls, self.checks = label, 0, checks

    def __call__(self, atoms):
        self.calls += 1
        if self.calls == self.checks + 1:
            raise KeyboardInterrupt("simulated interruption while labelling")
        return self.label(atoms)


@pytest.fixture(scope="module")
def resumed_run(stub_data, tmp_path_factory, request):
    directory, label = stub_data
    out = tmp_path_factory.mktemp("learn") / "run"
    config = tiny_config(directory, out)
    with pytest.raises(KeyboardInterrupt):
        run_learning(config, CrashOnce(label))
    crashed = {"state": read_state(out), "round1_exists": (out / "round-001").exists(),
               "round0_metrics": (out / "round-000" / "train" / "metrics.json").read_bytes()}
    trained = []
    real_train = learn_loop.train
    patch = pytest.MonkeyPatch()
    patch.setattr(learn_loop, "train", lambda cfg, names: trained.append(cfg.out) or real_train(cfg, names=names))
    start = time.monotonic()
    try:
        report = run_learning(config, label)
    finally:
        patch.undo()
    return out, config, crashed, trained, report, label, time.monotonic() - start


def test_a_round_keeps_the_previous_rounds_split_and_splits_only_its_new_frames(resumed_run):
    """Each round drew a new random split of the grown data while starting from the previous round's weights, so
    round 1 validated on frames round 0 had trained on (both of its valid frames in the probe, all three of round
    2's): optimistic validation errors, best epochs and ensemble calibration."""
    out = resumed_run[0]
    first, second = (np.load(out / f"round-00{k}" / "train" / "split.npz") for k in (0, 1))
    assert not set(second["valid"]) & set(first["train"])
    assert set(first["valid"]) <= set(second["valid"]) and set(first["train"]) <= set(second["train"])
    new = set(range(8, 11))  # 8 starting frames, 3 selected in round 1; valid share 2/8: round(0.75) = 1 new valid
    assert len(set(second["valid"]) & new) == 1 and set(second["train"]) | set(second["valid"]) == set(range(11))


def test_the_report_splits_each_rounds_frames_into_training_and_validation_frames(resumed_run):
    """The report's "frames" were documented as training frames while they counted the validation frames too."""
    out, report = resumed_run[0], resumed_run[4]
    splits = [np.load(out / f"round-00{k}" / "train" / "split.npz") for k in (0, 1)]
    assert [(r["train_frames"], r["valid_frames"]) for r in report["rounds"]] == [
        (len(split["train"]), len(split["valid"])) for split in splits] == [(6, 2), (8, 3)]
    line = report_lines(report_rows([read_state(out)["rounds"][1]]))
    assert line[0].split()[:4] == ["round", "frames", "train", "valid"] and line[1].split()[:4] == ["1", "11", "8", "3"]
    old_run = {k: v for k, v in read_state(out)["rounds"][1].items() if k not in ("train_frames", "valid_frames")}
    assert report_lines(report_rows([old_run]))[1].split()[:4] == ["1", "11", "n/a", "n/a"]


def test_interrupted_loop_resumes_without_retraining_round_0(resumed_run):
    out, config, crashed, trained, report, label, seconds = resumed_run
    assert [r["round"] for r in crashed["state"]["rounds"]] == [0] and crashed["round1_exists"]
    assert trained == [str(out / "round-001" / "train")]
    assert (out / "round-000" / "train" / "metrics.json").read_bytes() == crashed["round0_metrics"]
    state = read_state(out)
    assert [r["round"] for r in state["rounds"]] == [0, 1]
    # an uninterrupted run: 8 initial frames, then select=3 labelled frames (more than 3 distinct candidates)
    assert [r["frames"] for r in report["rounds"]] == [8, 11]
    assert [r["selected"] for r in report["rounds"]] == [0, 3]
    assert 0 < state["rounds"][1]["time_s"] <= seconds  # round 1, the only one the resumed call ran
    # 300 K MD of the stub's ensemble stays ethanol: no frame is cut by the physical filter
    assert [r["unphysical_frames"] for r in report["rounds"]] == [0, 0] and state["rounds"][1]["unphysical_frames"] == 0
    assert json.loads((out / "report.json").read_text()) == json.loads(json.dumps(report))
    assert not (out / ".lock").exists()  # released by the interrupted run, and again by the resumed one


def test_a_run_directory_in_use_by_another_learning_process_is_refused(stub_data, tmp_path, capsys):
    """On main a second `learn` on the same --out took the first one's round in progress for an interrupted one
    and removed it (shutil.rmtree), and the first died with a FileNotFoundError traceback. The loop holds OUT/.lock
    (as the trainer holds its run's) for its whole run; a second is refused before it reads or writes anything."""
    import socket
    import subprocess
    import sys

    from physnetjax.learn.__main__ import main
    from physnetjax.train.run_lock import LOCK_NAME, RunLockedError

    def never(atoms):
        raise AssertionError("the refused run labelled a frame")

    out = tmp_path / "run"
    (out / "round-000").mkdir(parents=True)  # the round the first process runs
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    refusal = f"{out} is in use by another learning process (pid {holder.pid}): wait for it to end, or pick another --out"
    try:
        (out / LOCK_NAME).write_text(f"{socket.gethostname()} {holder.pid}")
        with pytest.raises(RunLockedError, match=f"^{re.escape(refusal)}$"):
            run_learning(tiny_config(stub_data[0], out), never)
        assert main(["--out", str(out), "--rounds", "0"]) == 3
        assert capsys.readouterr().err == f"python -m physnetjax.learn: error: --out {refusal}\n"
        assert sorted(p.name for p in out.iterdir()) == [LOCK_NAME, "round-000"]
    finally:
        holder.kill()
        holder.wait()


def test_each_round_continues_from_the_previous_rounds_model(resumed_run):
    # Round 0 starts from random weights; round k continues from round k − 1's best checkpoint (--init-from,
    # whose loading test_train.py checks), as its train/config.json records.
    out, *_ = resumed_run
    recorded = [json.loads((out / f"round-{k:03d}" / "train" / "config.json").read_text())["init_from"]
                for k in (0, 1)]
    assert recorded == [None, str(out / "round-000" / "train" / "best")]


def test_selected_frames_are_md_frames_labelled_by_the_labeller(resumed_run):
    out, config, crashed, trained, report, label, _ = resumed_run
    initial = load_dataset(out / "initial.npz")
    data = load_dataset(out / "round-001" / "data.npz")
    np.testing.assert_array_equal(data.R[:8], initial.R)
    md = [a for t in config.temperatures for a in ase.io.read(out / "round-001" / "explore" / f"md-{t:g}K.xyz", ":")]
    spreads, every = {}, []
    for t in config.temperatures:
        for a, record in zip(ase.io.read(out / "round-001" / "explore" / f"md-{t:g}K.xyz", ":"),
                             map(json.loads, (out / "round-001" / "explore" / f"md-{t:g}K.xyz.jsonl").open())):
            spreads[a.positions.tobytes()] = record["max_forces_std_eV_per_A"]
            every.append(record["max_forces_std_eV_per_A"])
    chosen = []
    for k in range(8, 11):
        atoms = ase.Atoms(numbers=data.Z[k], positions=data.R[k])
        assert any(np.array_equal(atoms.positions, a.positions) for a in md)
        expected = label(atoms)
        assert data.E[k] == pytest.approx(expected["E"], rel=1e-12)
        np.testing.assert_allclose(data.F[k], expected["F"], rtol=1e-12, atol=1e-12)
        chosen.append(spreads[atoms.positions.tobytes()])
    assert min(every) > 0 and chosen == sorted(chosen, reverse=True)  # (two epochs: the members differ)
    summary = read_state(out)["rounds"][1]
    assert summary["selected_spreads_eV_per_A"] == pytest.approx(chosen)
    assert summary["md_max_spread_eV_per_A"] == pytest.approx(max(every))
    assert summary["md_mean_spread_eV_per_A"] == pytest.approx(np.mean(every), rel=1e-12)
    assert len(every) == config.md_steps // config.save_every  # every saved frame is a candidate
    assert data.config_type.tolist() == ["Default"] * 8 + ["learn_300K"] * 3  # the start's kind, the MD's temperature
    assert load_dataset(out / "round-001" / "selected.npz").config_type.tolist() == ["learn_300K"] * 3
    assert report["rounds"][1]["test_forces_mae"] is not None and report["rounds"][1]["test_forces_mae"] > 0


def test_plot_is_written_or_skipped_with_a_note(resumed_run):
    out, *_ = resumed_run
    report = json.loads((out / "report.json").read_text())
    if report["plot"] is not None:
        assert (out / "learning_curve.png").stat().st_size > 0


def test_run_directory_with_other_settings_is_refused(stub_data, tmp_path):
    directory, label = stub_data
    config = tiny_config(directory, tmp_path)
    round_0 = {"round": 0, "frames": 8, "selected": 0, "md": [], "valid": {"forces_mae": 0.1}, "test": None}
    write_state(tmp_path, config.to_dict(), [round_0], {})  # round 0 finished
    with pytest.raises(PhysNetInputError, match=r"other settings \(select was 3, now 4\); only rounds, progress may "
                                                r"change"):
        run_learning(tiny_config(directory, tmp_path, select=4), label)
    with pytest.raises(PhysNetInputError, match=r"other settings \(--select was 3, now 4; --temperatures was 300.0, now "
                                                r"300.0 500.0\); only --rounds, --progress may change"):
        run_learning(tiny_config(directory, tmp_path, select=4, temperatures=(300.0, 500.0)), label,
                     names={"select": "--select", "rounds": "--rounds", "progress": "--progress",
                            "temperatures": "--temperatures"})
    # the data file however it is spelled from here (it named only '--data', and refused './inp/a.npz' for 'inp/a.npz')
    moved = tiny_config(directory, tmp_path, data=f"{directory}/./initial.npz")
    assert moved.changed_from(config.to_dict()) == []


def test_a_run_without_a_finished_round_starts_anew_with_other_settings(stub_data, tmp_path, monkeypatch, caplog):
    """A run whose round 0 was refused (or interrupted) could not be resumed with a corrected setting: 'holds a run
    with other settings ['valid']; pick another --out'. Nothing of it is worth keeping: it is started anew."""
    directory, label = stub_data
    out = tmp_path / "run"
    old = tiny_config(directory, out, valid=3)
    out.mkdir()
    write_state(out, old.to_dict(), [], {})
    save_frames(load_dataset(directory / "initial.npz").subset(np.arange(7)), out / "initial.npz")
    save_frames(load_dataset(directory / "test.npz"), out / "test.npz")
    (out / "round-000" / "train").mkdir(parents=True)
    trained = []
    monkeypatch.setattr(learn_loop, "train",
                        lambda config, names: trained.append(config) or {"valid": {"forces_mae": 0.1}})
    new = tiny_config(directory, out, valid=2, test=None, rounds=0)
    with caplog.at_level("WARNING", logger="physnetjax.learn.loop"):
        report = run_learning(new, label, names={"valid": "--valid", "test": "--test"})
    assert f"{out}: no round of its run has finished; starting the run anew with the changed settings (--test was " \
           f"{directory / 'test.npz'}, now none; --valid was 3, now 2)" in caplog.text
    assert read_state(out)["settings"] == new.to_dict() and len(report["rounds"]) == 1
    assert len(load_dataset(out / "initial.npz")) == 8 and not (out / "test.npz").exists()
    assert len(trained) == 1 and trained[0].valid == 2 and not (out / "round-000" / "train").exists()


def test_a_valid_that_leaves_round_0_no_validation_frame_is_refused_before_anything_is_written(tmp_path, capsys):
    """The split was the trainer's, inside round 0: the run directory was left behind, holding --valid 0.001."""
    from physnetjax.learn.__main__ import main

    out = tmp_path / "run"
    assert main(["--out", str(out), "--valid", "0.001", "--rounds", "0"]) == 2
    assert capsys.readouterr().err == ("python -m physnetjax.learn: error: cannot split 50 frames: the validation "
                                       "split needs at least 1 frame (it selects the best checkpoint); --valid 0.001 "
                                       "gives none, give a frame count such as --valid 1\n")
    assert not out.exists()


def test_resuming_with_fewer_rounds_than_finished_is_refused(stub_data, tmp_path):
    """--rounds 1 on a run with 3 finished rounds rewrote report.json with rounds 0..1 only, without a word."""
    directory, label = stub_data
    rounds = [{"round": k, "frames": 8 + 3 * k, "selected": 3 * (k > 0), "md": [], "valid": {"forces_mae": 0.1},
               "test": None} for k in range(4)]
    write_state(tmp_path, tiny_config(directory, tmp_path, rounds=3).to_dict(), rounds, {})
    with pytest.raises(PhysNetInputError, match=rf"^{re.escape(str(tmp_path))} has finished 3 round\(s\) after the "
                                                r"initial training \(rounds 0..3\); resuming it with rounds = 1 "
                                                r"\(--rounds\) would leave the last 2 out of its report: pass "
                                                r"--rounds 3 to rewrite the report, or more to add rounds$"):
        run_learning(tiny_config(directory, tmp_path, rounds=1), label)
    assert not (tmp_path / "report.json").exists()


def test_a_run_resumes_whatever_its_directory_is_called(stub_data, tmp_path):
    """The recorded --out was compared as a string: resuming 'run' as './run', by its absolute path or after
    moving it was refused as 'a run with other settings ['out']'."""
    directory, _ = stub_data
    recorded = tiny_config(directory, tmp_path / "run").to_dict()
    for spelling in (tmp_path / "run" / ".", tmp_path / "moved"):
        assert tiny_config(directory, spelling).changed_from(recorded) == []
    assert tiny_config(directory, tmp_path / "moved", select=4).changed_from(recorded) == ["select"]


def test_starting_frames_of_another_charge_are_refused(stub_data, tmp_path):
    """The loop labels at --charge: neutral starting frames with --charge 1 would mix two systems."""
    directory, label = stub_data
    with pytest.raises(PhysNetInputError, match=r"total charge\(s\) 0 e but --charge is 1 e"):
        run_learning(tiny_config(directory, tmp_path / "run", charge=1.0), label)
    assert not (tmp_path / "run").exists()  # checked before the run directory is made


def test_md_starts_at_the_frame_charge(stub_data):
    """The exploration MD runs at the starting frame's total charge (it ran every system as neutral)."""
    from physnetjax.learn.explore import start_geometry

    directory, _ = stub_data
    data = load_dataset(directory / "initial.npz")
    data.Q[:] = -1.0
    assert start_geometry(data, seed=3).info["charge"] == -1.0


def test_exploration_runs_each_temperature_with_its_own_seed_and_keeps_the_uncertain_frames(stub_data, tmp_path,
                                                                                            monkeypatch):
    """explore() with the MD replaced by a recorder that writes three frames of spread 0.05, 0.4, 0.2 eV/Å: one run
    per temperature, at that temperature, seeded seed + 1000 × round + t (a new start frame, momenta and noise each
    round); the candidates are the frames above the uncertainty threshold, in run order."""
    import physnetjax.learn.explore as explore_module
    from physnetjax.learn.explore import SPREAD_KEY, explore

    directory, _ = stub_data
    data = load_dataset(directory / "initial.npz")
    runs = []

    def recorded_simulate(model, params, start, *, temperature_K, seed, out, **settings):
        runs.append((temperature_K, seed))
        ase.io.write(out, [start] * 3)
        Path(f"{out}.jsonl").write_text("".join(json.dumps({SPREAD_KEY: s}) + "\n" for s in (0.05, 0.4, 0.2)))

    monkeypatch.setattr(explore_module, "simulate", recorded_simulate)
    monkeypatch.setattr(explore_module, "load_checkpoint", lambda path, with_metadata: (None, None, {}))
    config = tiny_config(directory, tmp_path / "run", temperatures=(300.0, 900.0), uncertainty_threshold=0.1, seed=7)
    candidates, summaries = explore("model", data, tmp_path / "md", config, round_index=2)
    assert runs == [(300.0, 2007), (900.0, 2008)]
    assert [(s["temperature_K"], s["frames"], s["candidates"]) for s in summaries] == [(300.0, 3, 2), (900.0, 3, 2)]
    np.testing.assert_array_equal(candidates.spreads, [0.4, 0.2, 0.4, 0.2])
    assert candidates.origins == ["md-300K.xyz[1]", "md-300K.xyz[2]", "md-900K.xyz[1]", "md-900K.xyz[2]"]
    assert candidates.kinds == ["learn_300K", "learn_300K", "learn_900K", "learn_900K"]


def test_a_round_without_candidates_says_why(stub_data, tmp_path):
    """--uncertainty-threshold above every frame's spread left the round no candidate: it retrained on the same
    frames, with 0 selected in the report and no word why."""
    from physnetjax.learn.loop import _warn_if_no_candidates

    directory, _ = stub_data
    runs = [{"max_spread_eV_per_A": 0.3}, {"max_spread_eV_per_A": 0.5}, {"max_spread_eV_per_A": None}]
    config = tiny_config(directory, tmp_path / "run", uncertainty_threshold=2.0)
    with pytest.warns(PhysNetInputWarning, match=r"^round 3: no MD frame is a candidate \(the largest force spread of "
                                                 r"its MD frames, 0.5 eV/Å, is below --uncertainty-threshold 2 eV/Å\): "
                                                 r"the round retrains on the previous round's frames, with no new "
                                                 r"one$"):
        _warn_if_no_candidates(np.zeros(0), runs, config, 3, {"uncertainty_threshold": "--uncertainty-threshold"})
    with pytest.warns(PhysNetInputWarning, match=r"\(every MD frame was cut as unphysical, had no finite spread"):
        _warn_if_no_candidates(np.zeros(0), runs, tiny_config(directory, tmp_path / "run"), 3, None)
    past = tiny_config(directory, tmp_path / "run", uncertainty_threshold=0.4)  # the 0.5 eV/Å run went past it
    with pytest.warns(PhysNetInputWarning, match=r"\(every MD frame was cut as unphysical, had no finite spread"):
        _warn_if_no_candidates(np.zeros(0), runs, past, 3, None)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _warn_if_no_candidates(np.array([0.4]), runs, config, 3, None)


@pytest.mark.slow
def test_resumed_run_equals_uninterrupted_run(resumed_run, tmp_path):
    out, config, crashed, trained, report, label, _ = resumed_run
    other = tiny_config(Path(config.data).parent, tmp_path / "run")
    straight = run_learning(other, label)
    assert [r["frames"] for r in straight["rounds"]] == [r["frames"] for r in report["rounds"]]
    a, b = load_dataset(out / "round-001" / "data.npz"), load_dataset(tmp_path / "run" / "round-001" / "data.npz")
    np.testing.assert_array_equal(a.R, b.R)
    np.testing.assert_array_equal(a.F, b.F)


@pytest.mark.slow
def test_cli_loop_with_gfn2_xtb_labels(tmp_path, capsys):
    pytest.importorskip("tblite")
    from physnetjax.learn.__main__ import main

    out = tmp_path / "run"
    assert main(["--out", str(out), "--initial-frames", "10", "--test-frames", "5", "--rounds", "1", "--select", "2",
                 "--min-rmsd", "0.01", "--temperatures", "300", "800", "--md-steps", "20", "--save-every", "4",
                 "--ensemble", "2", "--features", "8", "--num-iterations", "1", "--num-basis-functions", "8",
                 "--epochs", "1", "--batch-size", "16", "--valid", "2"]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert printed[0].startswith("round  frames  selected") and len(printed) == 4
    report = json.loads((out / "report.json").read_text())
    assert [r["frames"] for r in report["rounds"]] == [10, 12]
    assert (out / "config.toml").exists()
    data = load_dataset(out / "round-001" / "data.npz")
    bundled = load_dataset(bundled_dataset_path())
    # GFN2-xTB energies of ethanol lie where the bundled GFN2-xTB set lies (same method, absolute eV)
    assert bundled.E.min() - 1.0 < data.E[10:].min() and data.E[10:].max() < bundled.E.max() + 5.0
    assert data.has_D.all()
    # the labels are tblite's own, recomputed here
    from tblite.ase import TBLite

    atoms = ase.Atoms(numbers=data.Z[10], positions=data.R[10])
    atoms.calc = TBLite(method="GFN2-xTB", verbosity=0)
    assert data.E[10] == pytest.approx(atoms.get_potential_energy(), abs=1e-6)
    np.testing.assert_allclose(data.F[10], atoms.get_forces(), atol=1e-6)


@pytest.mark.parametrize("args, message", [
    (["--ensemble", "1"], "ensemble must be >= 2 members"),
    # main named the settings' fields (md_steps, save_every, min_rmsd, timestep_fs, ...), not the options
    (["--md-steps", "25", "--save-every", "10"], "error: --md-steps (25) must be a multiple of --save-every (10)"),
    (["--md-steps", "0"], "error: --md-steps must be >= 1, received 0"),
    (["--min-rmsd", "0"], "error: --min-rmsd must be > 0"),
    (["--min-distance", "-1"], "error: --min-distance must be >= 0"),
    # main named the trainer's and the model's fields: message_degree, features, learning_rate, seed, max_time, ...
    (["--message-degree", "2"], "error: --message-degree 2 > --max-degree 1 needs --correlation >= 2"),
    (["--features", "0"], "error: --features must be at least 1, received 0"),
    (["--cutoff", "nan"], "error: --cutoff must be larger than 0 and finite, received nan"),
    (["--learning-rate", "-1"], "error: --learning-rate must be > 0 and finite, received -1.0"),
    (["--seed", "-1"], "error: --seed must be an integer from 0 to 4294967288 (the run also uses the 7 seed(s) "
                       "after it): JAX keeps 32 bits of a seed, so a larger one repeats a smaller one's numbers; "
                       "received -1"),
    (["--max-time", "0"], "error: --max-time must be > 0 seconds and finite, received 0.0"),
    (["--valid", "inf"], "error: --valid must be a fraction in (0, 1) or a whole number of frames >= 1, received "
                         "inf"),  # main: internal error (OverflowError)
    (["--timestep", "-1"], "error: --timestep must be finite and > 0 fs, received -1.0"),
    (["--friction", "-1"], "error: --friction must be finite and > 0 fs^-1, received -1.0"),
    (["--max-force", "-1"], "error: --max-force must be finite and > 0 eV/Å, received -1.0"),
    (["--uncertainty-threshold", "-1"], "error: --uncertainty-threshold must be finite and > 0 eV/Å"),
    (["--temperatures", "300", "nan"], "error: --temperatures must be one or more finite values > 0 K"),
    (["--temperatures", "0"], "error: --temperatures must be one or more finite values > 0 K, received [0.0]"),
    (["--initial-frames", "1"], "error: --initial-frames must be >= 2 (a training and a validation frame), "
                                "received 1"),
    (["--bond-factor", "0"], "error: --bond-factor must be > 0, received 0.0"),
    (["--test-frames", "-1"], "error: --test-frames must be >= 0, received -1"),
    (["--valid", "0"], "error: --valid must be a fraction in (0, 1) or a whole number of frames >= 1, received 0.0"),
    (["--valid", "1.5"], "error: --valid must be a fraction in (0, 1) or a whole number of frames >= 1, received "
                         "1.5"),
    (["--energy-unit", "kcal/mol"], "error: --energy-unit: apply to the --data and --test files, and neither is "
                                    "given"),
    (["--data", "x.npz", "--keys", "E"], "error: --keys: "),
    (["--temperatures", "300", "3e6"], "error: --temperatures must be at most 1e+06 K (k_B T = 86 eV there, beyond "
                                       "any chemistry), received 3000000.0"),
    (["--valid", "5.5"], "error: --valid must be a fraction in (0, 1) or a whole number of frames >= 1"),
    (["--md-ensemble", "csvr", "--friction", "0.1"], "--md-ensemble csvr does not use --friction (langevin only)"),
    # both ignored without a word: the run had no test set, or ignored the exclusion radius
    (["--data", "x.npz", "--test-frames", "5"], "error: --data x.npz does not use --test-frames (drawn from the "
                                                "bundled set, which --data replaces): remove it or give the test "
                                                "frames as --test FILE, held out of --data"),
    (["--test", "y.npz", "--test-frames", "5"], "error: --test y.npz does not use --test-frames (drawn from the "
                                                "bundled set, which --test replaces): remove it or give"),
    (["--selection", "random", "--min-rmsd", "0.2"], "error: --selection random does not use --min-rmsd (the RMSD "
                                                     "exclusion of uncertain-diverse): remove it or choose --selection "
                                                     "uncertain-diverse"),
])
def test_cli_bad_settings_are_one_line_errors(tmp_path, capsys, args, message):
    from physnetjax.learn.__main__ import main

    assert main(["--out", str(tmp_path / "run"), *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("python -m physnetjax.learn: error:") and message in err[0]
    assert not (tmp_path / "run").exists()


def test_cli_refuses_a_config_files_friction_for_another_md_ensemble(tmp_path, capsys):
    """The command line's refusal of --friction beside --md-ensemble csvr was not made for a config file's."""
    from physnetjax.learn.__main__ import main

    config = tmp_path / "learn.toml"
    config.write_text('md_ensemble = "csvr"\nfriction = 0.1\n')
    missing = tmp_path / "missing.npz"  # with the refusal gone, the run stops there instead of training for minutes
    assert main(["--out", str(tmp_path / "run"), "--config", str(config), "--data", str(missing)]) == 2
    assert (f"--md-ensemble csvr does not use --friction (langevin only, set in --config {config})"
            in capsys.readouterr().err)
    assert not (tmp_path / "run").exists()


def test_the_python_api_names_the_settings():
    """LearnConfig's checks name its fields; only a command line passes its option names."""
    with pytest.raises(ValueError, match=r"^timestep_fs must be finite and > 0 fs, received -1.0$"):
        LearnConfig(timestep_fs=-1.0)
    with pytest.raises(ValueError, match=r"^md_steps \(25\) must be a multiple of save_every \(10\)$"):
        LearnConfig(md_steps=25, save_every=10)
    with pytest.raises(ValueError, match=r"^features must be at least 1, received 0$"):
        LearnConfig(features=0)
    with pytest.raises(ValueError, match=r"^learning_rate must be > 0 and finite, received 0.0$"):
        LearnConfig(learning_rate=0.0)
    assert "names" not in LearnConfig(names={"timestep_fs": "--timestep"}).to_dict()
    for settings, message in [(dict(rounds=-1), "rounds must be >= 0, received -1"),
                              (dict(charge=float("nan")), "charge must be finite, received nan"),
                              (dict(max_label_force=0.0), "max_label_force must be > 0 eV/Å, received 0.0"),
                              (dict(md_ensemble="npt"), "md_ensemble must be one of ["),
                              (dict(md_ensemble="nvt"), "md_ensemble must be one of ["),
                              (dict(initial_frames=1), "initial_frames must be >= 2 (a training and a validation "
                                                       "frame), received 1"),
                              (dict(test_frames=-1), "test_frames must be >= 0, received -1"),
                              (dict(retrain_epochs=0), "retrain_epochs must be >= 1, received 0"),
                              # one md-300K.xyz was left of two runs; candidates of both were named by it
                              (dict(temperatures=(300.0, 500.0, 300.0000001)),
                               "temperatures holds 300 K more than once (received 300 500 300): a second MD run at a "
                               "temperature replaced the first one's trajectory; give each temperature once "
                               "(md_steps sets how long each runs)")]:
        with pytest.raises(ValueError, match="^" + re.escape(message)):
            LearnConfig(**settings)


@pytest.mark.parametrize("content, problem", [
    ('{"version": 1, "settings": {', "not valid JSON"),
    ("[1, 2]", "JSON of another layout"),
    ('{"version": 1}', "JSON of another layout"),
])
def test_a_damaged_run_state_is_a_one_line_error(tmp_path, capsys, content, problem):
    """A state.json cut short or edited gave 'error: Expecting property name ...' (no file named) or an internal
    error (AttributeError: 'list' object has no attribute 'get', KeyError: 'settings')."""
    from physnetjax.learn.__main__ import main

    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "state.json").write_text(content)
    (tmp_path / "file").write_text("x")
    assert main(["--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"python -m physnetjax.learn: error: {tmp_path / 'run' / 'state.json'} cannot be resumed "
                          f"from: it is {problem}") and "restore it, or start afresh in another --out" in err
    assert main(["--out", str(tmp_path / "file")]) == 3  # an output refusal (physnetjax.cli_errors)
    assert capsys.readouterr().err.strip() == (f"python -m physnetjax.learn: error: --out {tmp_path / 'file'} exists "
                                               "and is not a directory: give the run directory (a new one starts a "
                                               "run, an existing one resumes it)")


def _copy_of_run(resumed_run, tmp_path) -> Path:
    import shutil

    return Path(shutil.copytree(resumed_run[0], tmp_path / "run"))


@pytest.mark.parametrize("edit, problem", [
    (lambda run: _rescaled(run / "round-001" / "data.npz", 0.0367493),
     r"round-001/data.npz changed since the run wrote it \(SHA-256 differs\)"),
    (lambda run: _rescaled(run / "initial.npz", -1.0), r"initial.npz changed since the run wrote it \(SHA-256 "
                                                       r"differs\)"),
    (lambda run: (run / "test.npz").unlink(), r"test.npz missing"),
    (lambda run: (_rescaled(run / "initial.npz", 2.0), (run / "round-000" / "data.npz").unlink()),
     r"initial.npz changed since the run wrote it \(SHA-256 differs\); round-000/data.npz missing"),
])
def test_a_resumed_run_refuses_data_files_changed_or_missing_since_it_wrote_them(resumed_run, tmp_path, edit,
                                                                                    problem):
    """A round's data.npz rescaled to hartree was trained on with exit 0 (test energy MAE 249 eV), an edited
    initial.npz too (its labels were checked only when the run started), and a deleted test.npz dropped the test
    errors from the next rounds and switched the learning curve to validation errors, without a word."""
    run = _copy_of_run(resumed_run, tmp_path)
    config = dataclasses.replace(resumed_run[1], out=str(run), rounds=2)
    edit(run)
    with pytest.raises(PhysNetInputError, match=rf"^{re.escape(str(run))} cannot be resumed: {problem}\. The finished "
                                                r"rounds trained and tested on the files as written"):
        run_learning(config, resumed_run[5])
    assert not (run / "round-002").exists()


def _rescaled(path: Path, factor: float) -> None:
    data = dict(np.load(path))
    data["E"], data["F"] = data["E"] * factor, data["F"] * factor
    np.savez(path, **data)


@pytest.mark.parametrize("edit, problem", [
    (lambda rounds: rounds[1].pop("valid"), r"round entry 1 has no valid summary \(KeyError: 'valid'\)"),
    (lambda rounds: rounds.__setitem__(1, "x"), r"round entry 1 is a str, not an object"),
    (lambda rounds: rounds[1].__setitem__("frames", "12"), r"round entry 1 has no valid summary \(ValueError: "
                                                            r"Unknown format code 'd'"),
    (lambda rounds: rounds[1].__setitem__("round", 2), r"round entry 1 says round 2"),
])
def test_a_damaged_round_entry_of_the_run_state_is_named(resumed_run, tmp_path, capsys, edit, problem):
    """A round entry without 'valid' or replaced by a string was an internal error (KeyError, AttributeError, exit
    5); one with a frame count '12' an error of Python's format mini-language, after report.json was rewritten."""
    from physnetjax.learn.__main__ import main

    run = _copy_of_run(resumed_run, tmp_path)
    state = json.loads((run / "state.json").read_text())
    edit(state["rounds"])
    (run / "state.json").write_text(json.dumps(state))
    report = (run / "report.json").read_bytes()
    assert main(["--out", str(run)]) == 2
    err = capsys.readouterr().err.strip()
    assert re.match(rf"python -m physnetjax.learn: error: {re.escape(str(run / 'state.json'))} cannot be resumed "
                    rf"from: {problem}", err), err
    assert err.endswith("it was edited or damaged: restore it, or start afresh in another --out")
    assert (run / "report.json").read_bytes() == report


def test_settings_a_run_predates_count_as_their_defaults():
    """A state.json written before a setting existed resumes with that setting's default, and only with it."""
    recorded = LearnConfig().to_dict()
    del recorded["correlation"], recorded["radial_mlp"], recorded["message_degree"], recorded["uhf"]
    assert LearnConfig().changed_from(recorded) == []
    assert LearnConfig(correlation=2).changed_from(recorded) == ["correlation"]
    assert LearnConfig(radial_mlp=16).changed_from(recorded) == ["radial_mlp"]
    assert LearnConfig(message_degree=1).changed_from(recorded) == ["message_degree"]
    assert LearnConfig(uhf=1).changed_from(recorded) == ["uhf"]
    assert LearnConfig(features=16).changed_from(recorded) == ["features"]


def test_the_loops_model_settings_reach_the_trainer_unchanged(tmp_path):
    """Every architecture setting of the loop is a PhysNet keyword and is passed to each round's trainer as set."""
    assert set(MODEL_SETTINGS) <= {f.name for f in dataclasses.fields(PhysNet)}
    assert set(MODEL_SETTINGS) <= {f.name for f in dataclasses.fields(TrainConfig)}
    changed = dict(features=16, max_degree=2, num_iterations=3, correlation=3, radial_mlp=8, message_degree=3,
                   num_basis_functions=12, cutoff=4.5)
    assert set(changed) == set(MODEL_SETTINGS)
    config = learn_loop.round_train_config(LearnConfig(out=str(tmp_path), **changed), tmp_path, 1, None)
    assert {name: getattr(config, name) for name in MODEL_SETTINGS} == changed


@pytest.mark.parametrize("epochs, retrain_epochs, warmups", [(40, None, (1.0, 1.0)), (20, 5, (1.0, 0.5)),
                                                               (3, 1, (0.3, 0.1))])
def test_each_rounds_warm_up_is_shorter_than_the_round(tmp_path, epochs, retrain_epochs, warmups):
    """The trainer's default one-epoch warm-up spanned a whole round of --retrain-epochs 1 (lr only rising)."""
    config = LearnConfig(out=str(tmp_path), epochs=epochs, retrain_epochs=retrain_epochs)
    rounds = [learn_loop.round_train_config(config, tmp_path, index, None) for index in (0, 1)]
    assert [(c.epochs, c.schedule) for c in rounds] == [(epochs, "cosine"), (retrain_epochs or epochs, "cosine")]
    assert tuple(c.warmup_epochs for c in rounds) == pytest.approx(warmups, rel=1e-12)


@pytest.fixture(scope="module")
def radical_data(tmp_path_factory):
    """8 OH radical frames (O-H 0.90-1.04 Å; 7 GFN2-xTB valence electrons in 5 orbitals) with stub labels."""
    geometries = [np.array([[0.0, 0.0, 0.0], [0.0, 0.0, bond]]) for bond in np.linspace(0.90, 1.04, 8)]
    label = make_stub(geometries[3])
    data = labelled_frames([np.array([8, 1])] * 8, geometries,
                           [label(ase.Atoms("OH", positions=r)) for r in geometries], 0.0, "stub")
    path = tmp_path_factory.mktemp("radical") / "oh.npz"
    save_frames(data, path)
    return path, label


def labeller_factory(calls: list, label):
    """A stand-in for ``xtb_labeller`` that records its (method, charge, uhf) and labels with ``label``."""
    def factory(method, charge, uhf):
        calls.append((method, charge, uhf))
        return label

    return factory


@pytest.mark.parametrize("data, uhf, message", [
    ("oh", [], "HO at charge 0 has 9 electrons, 7 of them in the valence shells GFN2-xTB treats, an odd number: "
               "give uhf (--uhf), the number of unpaired electrons, e.g. 1 for a doublet"),
    ("oh", ["--uhf", "2"], "uhf 2 does not match the parity of the electrons: HO at charge 0 has 9 electrons, 7 of "
                           "them in the valence shells GFN2-xTB treats, so uhf must be odd"),
    ("oh", ["--uhf", "5"], "uhf 5: the number of unpaired electrons must be between 0 and 3 (HO at charge 0 has 9 "
                           "electrons, 7 of them in the valence shells GFN2-xTB treats, in 5 valence orbitals: at "
                           "most 5 electrons can have one spin, so uhf <= 2 × 5 - 7)"),
    (None, ["--uhf", "1"], "uhf 1 does not match the parity of the electrons: C2H6O at charge 0 has 26 electrons, "
                           "20 of them in the valence shells GFN2-xTB treats, so uhf must be even"),
])
def test_cli_refuses_starting_frames_whose_electrons_do_not_allow_the_uhf(radical_data, tmp_path, capsys,
                                                                          monkeypatch, data, uhf, message):
    """The labeller labelled closed shells only: on OH it refused every selected frame, after round 0's training and
    round 1's MD. Now the start is checked as python -m physnetjax.data.generate checks its molecule."""
    from physnetjax.learn.__main__ import main

    calls = []
    monkeypatch.setattr(learn_loop, "xtb_labeller", labeller_factory(calls, radical_data[1]))
    argv = ["--out", str(tmp_path / "run"), *uhf] + (["--data", str(radical_data[0])] if data else [])
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and re.fullmatch(rf"python -m physnetjax\.learn: error: starting frame \S+\[\d+\]: "
                                          rf"{re.escape(message)}", err[0])
    assert calls == [] and not (tmp_path / "run").exists()


@pytest.mark.filterwarnings("ignore:.*covalent bond length")
@pytest.mark.parametrize("which", ["data", "test"])
def test_cli_refuses_frames_with_elements_xtb_has_no_parameters_for(stub_data, tmp_path, capsys, monkeypatch, which):
    """Francium (Z = 87) for a hydrogen in --data or --test was an internal error (tblite's InputError, exit 5)."""
    from physnetjax.learn.__main__ import main

    directory, label = stub_data
    files = {"data": directory / "initial.npz", "test": directory / "test.npz"}
    frames = dict(np.load(files[which]))
    frames["Z"] = np.where(frames["Z"] == 1, 87, frames["Z"])  # both odd: the electrons' parity is unchanged
    files[which] = tmp_path / f"fr-{which}.npz"
    np.savez(files[which], **frames)
    monkeypatch.setattr(learn_loop, "xtb_labeller", labeller_factory([], label))
    monkeypatch.setattr(learn_loop, "train", lambda config, names: pytest.fail("the loop trained on them"))
    assert main(["--out", str(tmp_path / "run"), "--data", str(files["data"]), "--test", str(files["test"]),
                 "--rounds", "0"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"python -m physnetjax.learn: error: --{which} {files[which]}[0]: element(s) Fr (Z=87) at atom(s) "
                   "3, 4, 5, 6, 7 (and 1 more) are beyond GFN2-xTB, which covers Z = 1..86, H to Rn: label molecules "
                   "of these elements with another method (e.g. DFT) and train on that set"], err
    assert not (tmp_path / "run").exists()


@pytest.mark.filterwarnings("ignore:ensemble calibration on the validation split")
def test_cli_uhf_reaches_the_labeller_is_recorded_and_a_resume_with_another_is_refused(radical_data, tmp_path,
                                                                                      capsys, monkeypatch):
    from physnetjax.learn.__main__ import main

    calls = []
    monkeypatch.setattr(learn_loop, "xtb_labeller", labeller_factory(calls, radical_data[1]))
    out = tmp_path / "run"
    argv = ["--out", str(out), "--data", str(radical_data[0]), "--rounds", "0", "--ensemble", "2", "--features", "8",
            "--num-iterations", "1", "--num-basis-functions", "8", "--epochs", "1", "--batch-size", "5", "--valid",
            "2"]
    assert main([*argv, "--uhf", "1"]) == 0, capsys.readouterr().err
    assert calls == [("GFN2-xTB", 0.0, 1)]
    assert read_state(out)["settings"]["uhf"] == 1
    assert "uhf = 1" in (out / "config.toml").read_text().splitlines()
    capsys.readouterr()
    for other, now in ((["--uhf", "3"], "3"), ([], "none")):
        assert main([*argv, *other]) == 2
        assert capsys.readouterr().err == (f"python -m physnetjax.learn: error: --out {out} holds a run with other "
                                           f"settings (--uhf was 1, now {now}); only --rounds, --progress may change "
                                           "when resuming: pick another --out\n")
    assert main([*argv, "--uhf", "1"]) == 0
    assert calls == [("GFN2-xTB", 0.0, 1)] * 2


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:ensemble calibration on the validation split")
def test_cli_loop_labels_a_radical_with_its_unpaired_electron(tmp_path, capsys):
    """OH with --uhf 1: the labels of round 1 are tblite's doublet single points (multiplicity 2)."""
    pytest.importorskip("tblite")
    from tblite.ase import TBLite

    from physnetjax.data.generate import generate
    from physnetjax.learn.__main__ import main

    np.savez(tmp_path / "oh.npz", **generate("OH", frames=8, stride=5, temperature=300.0, equilibration_steps=20,
                                             uhf=1))
    out = tmp_path / "run"
    assert main(["--out", str(out), "--data", str(tmp_path / "oh.npz"), "--uhf", "1", "--rounds", "1", "--select",
                 "2", "--min-rmsd", "0.001", "--temperatures", "300", "--md-steps", "20", "--save-every", "4",
                 "--ensemble", "2", "--features", "8", "--num-iterations", "1", "--num-basis-functions", "8",
                 "--epochs", "1", "--batch-size", "5", "--valid", "2"]) == 0, capsys.readouterr().err
    selected = load_dataset(out / "round-001" / "selected.npz")
    assert len(selected) == 2
    for k in range(len(selected)):
        atoms = ase.Atoms(numbers=selected.Z[k], positions=selected.R[k])
        atoms.calc = TBLite(method="GFN2-xTB", multiplicity=2, verbosity=0)
        assert selected.E[k] == pytest.approx(atoms.get_potential_energy(), abs=1e-6)
        np.testing.assert_allclose(selected.F[k], atoms.get_forces(), atol=1e-6)


def test_report_rows_count_blow_ups_and_keep_each_error_in_its_column():
    """Two rounds written out by hand: MD blow-ups are the runs with a ``blew_up`` record, unphysical frames and
    label failures are summed, and every error lands in its own column (test E and F MAE differ)."""
    from physnetjax.learn.report import report_lines, report_rows

    rounds = [
        {"round": 0, "frames": 50, "selected": 0, "md": [], "valid": {"forces_mae": 0.3}},
        {"round": 1, "frames": 60, "train_frames": 45, "valid_frames": 15, "selected": 10,
         "md_mean_spread_eV_per_A": 0.05, "md_max_spread_eV_per_A": 0.4,
         "md": [{"blew_up": None, "unphysical_frames": 2}, {"blew_up": {"step": 120}, "unphysical_frames": 1},
                {"blew_up": None}],
         "label_failures": [{"frame": 3}], "valid": {"forces_mae": 0.2},
         "test": {"energy_mae": 0.011, "forces_mae": 0.25}},
    ]
    first, second = report_rows(rounds)
    assert first["md_blow_ups"] == 0 and first["test_forces_mae"] is None and first["md_max_spread_eV_per_A"] is None
    assert second == {"round": 1, "frames": 60, "train_frames": 45, "valid_frames": 15, "selected": 10,
                      "md_mean_spread_eV_per_A": 0.05,
                      "md_max_spread_eV_per_A": 0.4, "md_blow_ups": 1, "unphysical_frames": 3, "label_failures": 1,
                      "valid_forces_mae": 0.2, "test_energy_mae": 0.011, "test_forces_mae": 0.25}
    lines = report_lines([first, second])
    assert lines[1].split() == ["0", "50", "n/a", "n/a", "0", "0", "0", "n/a", "/", "n/a", "0", "0.3000", "n/a",
                                "n/a"]
    assert lines[2].split() == ["1", "60", "45", "15", "10", "3", "1", "0.0500", "/", "0.4000", "1", "0.2000",
                                "0.2500", "0.0110"]


@pytest.mark.parametrize("set_by_user", [None, "2"])
def test_cli_labels_on_one_openmp_thread_unless_the_environment_says_otherwise(tmp_path, monkeypatch, capsys,
                                                                            set_by_user):
    """tblite's default of a thread per core labelled 1.1-16x slower on 2 shared cores (data.generate's
    measurement): the loop runs with OMP_NUM_THREADS=1 unless the user set it, and leaves the environment as it was."""
    import os

    from physnetjax.learn.__main__ import main

    if set_by_user is None:
        monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    else:
        monkeypatch.setenv("OMP_NUM_THREADS", set_by_user)
    seen = []

    def fake_run(config, on_start=None, names=None):
        seen.append(os.environ.get("OMP_NUM_THREADS"))
        return {"rounds": [], "plot": None}

    monkeypatch.setattr(learn_loop, "run_learning", fake_run)
    assert main(["--out", str(tmp_path / "run")]) == 0
    assert seen == [set_by_user or "1"] and os.environ.get("OMP_NUM_THREADS") == set_by_user


def test_settings_at_the_edge_of_their_range_are_accepted(tmp_path):
    """The smallest allowed values: one validation frame, two starting frames, no distance filter (0 Å), a label
    force limit below 1 eV/Å, a bond factor below 1, temperatures below 1 K, no test frames."""
    config = LearnConfig(out=str(tmp_path / "run"), valid=1, initial_frames=2, min_distance=0.0, max_label_force=0.5,
                         bond_factor=0.5, temperatures=(0.5, 300.0), test_frames=0)
    assert (config.valid, config.initial_frames, config.min_distance, config.max_label_force, config.bond_factor,
            config.temperatures, config.test_frames) == (1, 2, 0.0, 0.5, 0.5, (0.5, 300.0), 0)
