"""The learning loop's starting frames (acceptance test of python -m physnetjax.learn): labels in other units, forces
of the opposite sign, an energy offset or another method's labels are refused before any training, after two
labeller calls made once (not on a resume); files without E or F are named with the key; the data checks' hints name
no option the loop lacks. Stub labeller and tiny runs of tests/test_learn.py."""

import dataclasses
import re
import warnings

import numpy as np
import pytest

import physnetjax.learn.loop as learn_loop
from physnetjax.data import bundled_dataset_path, load_dataset
from physnetjax.data.sanity import check_label_sanity
from physnetjax.learn import run_learning
from physnetjax.learn.__main__ import build_parser

from test_learn import labeller_factory, make_stub, stub_data, tiny_config  # noqa: F401 (stub_data: a fixture)

UNIT_OPTIONS = ("--energy-unit", "--force-unit", "--force-sign", "--dipole-unit")


class Counting:
    """A labeller that counts its calls."""

    def __init__(self, label):
        self.label, self.calls = label, 0

    def __call__(self, atoms):
        self.calls += 1
        return self.label(atoms)


def no_training(config, names=None):
    raise AssertionError("the loop trained on starting frames it should have refused")


def rewritten(directory, tmp_path, name, source="initial.npz", **changes):
    """The stub's ``source`` frames with ``changes`` (key → function of the array, or None to drop the key)."""
    raw = dict(np.load(directory / source))
    for key, change in changes.items():
        if change is None:
            del raw[key]
        else:
            raw[key] = change(raw[key])
    path = tmp_path / name
    np.savez(path, **raw)
    return path


def other_method(directory):
    """The stub frames relabelled by another 'method': the stub with springs about another reference geometry."""
    data = load_dataset(directory / "initial.npz")
    other = make_stub(data.R[3, : data.N[3]] * 1.02)
    labels = [other(_atoms(data, k)) for k in range(len(data))]
    return {"E": lambda E: np.array([label["E"] for label in labels]),
            "F": lambda F: np.array([label["F"] for label in labels])}


def _atoms(data, k):
    import ase

    return ase.Atoms(numbers=data.Z[k, : data.N[k]], positions=data.R[k, : data.N[k]])


def refused_start(label, tmp_path, capsys, monkeypatch, *files) -> tuple[list, Counting, object]:
    """Run ``python -m physnetjax.learn`` on ``files`` (its --data/--test options) with a counting stub labeller and no
    training; it must exit 2: (stderr lines, the labeller, the --out it was given)."""
    from physnetjax.learn.__main__ import main

    counting = Counting(label)
    monkeypatch.setattr(learn_loop, "xtb_labeller", labeller_factory([], counting))
    monkeypatch.setattr(learn_loop, "train", no_training)
    out = tmp_path / "run"
    assert main(["--out", str(out), *files, "--rounds", "0", "--ensemble", "2", "--features", "8",
                 "--valid", "2"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err, counting, out


@pytest.mark.parametrize("case, changes, finding", [
    ("kcal", {"E": lambda E: E * 23.06, "F": lambda F: F * 23.06},
     "the forces are 23.06 × GFN2-xTB's, as for kcal/mol/Å read as eV/Å; the energies are 23.06 × GFN2-xTB's, as "
     "for kcal/mol read as eV."),
    ("hartree", {"E": lambda E: E / 27.21, "F": lambda F: F / 51.42},
     "the forces are 1/51.42 × GFN2-xTB's, as for hartree/bohr read as eV/Å; the energies are 1/27.21 × GFN2-xTB's, "
     "as for hartree read as eV."),
    ("kj", {"E": lambda E: E * 96.49, "F": lambda F: F * 96.49},
     "the forces are 96.49 × GFN2-xTB's, as for kJ/mol/Å read as eV/Å; the energies are 96.49 × GFN2-xTB's, as for "
     "kJ/mol read as eV."),
    ("sign", {"F": lambda F: -F}, "the forces are −1 × GFN2-xTB's: the opposite sign (+dE/dR, gradients, stored as "
                                  "F)."),
    ("offset", {"E": lambda E: E + 5.0}, "the energies are offset by a constant +5 eV from GFN2-xTB's (another "
                                         "reference energy, e.g. atomization energies: subtract it from the file's "
                                         "E)."),
    ("method", None, "the forces differ from GFN2-xTB's by "),
])
def test_starting_labels_that_are_not_the_labellers_are_refused_before_training(stub_data, tmp_path, capsys,
                                                                                 monkeypatch, case, changes, finding):
    """kcal/mol (E, F × 23.06) and hartree (E / 27.21, F / 51.42) files only warned, with a hint naming options learn
    does not have, and were trained on and mixed with eV labels; F × −1 went through without a word."""
    directory, label = stub_data
    path = rewritten(directory, tmp_path, f"{case}.npz", **(changes or other_method(directory)))
    err, counting, out = refused_start(label, tmp_path, capsys, monkeypatch, "--data", str(path))
    assert err[0].startswith(f"python -m physnetjax.learn: error: --data {path}: its labels are not those of GFN2-xTB, "
                             f"which labels the loop's new frames (compared on {path}[0], {path}[1]): ")
    assert finding in err[0]
    assert err[0].endswith("The loop would mix the two in one training set: read the file in its units and force "
                           "sign (--energy-unit, --force-unit, --force-sign -1), or start from frames labelled with "
                           "GFN2-xTB (python -m "
                           "physnetjax.data.generate --molecule STRUCTURE --method GFN2-xTB --out start.npz, then "
                           "--data start.npz)")
    assert counting.calls == 2  # two starting frames labelled (physnetjax.learn.inputs.CHECK_FRAMES)
    assert not out.exists()


def test_labels_of_another_spin_state_name_the_loops_state_and_its_command(stub_data, tmp_path, capsys, monkeypatch):
    """--uhf 2 on closed-shell frames (the stub's triplet labels offset by 5 eV here) was "its labels are not those
    of GFN2-xTB", suggesting a data.generate command without --uhf 2, whose frames the loop would refuse again."""
    directory, label = stub_data

    def triplet(atoms):
        labels = label(atoms)
        return {**labels, "E": labels["E"] + 5.0}

    err, _, out = refused_start(triplet, tmp_path, capsys, monkeypatch, "--data", str(directory / "initial.npz"),
                                "--uhf", "2", "--charge", "0")
    assert err[0].startswith(f"python -m physnetjax.learn: error: --data {directory / 'initial.npz'}: its labels are "
                             "not those of GFN2-xTB with 2 unpaired electron(s), which labels the loop's new frames")
    assert err[0].endswith("or start from frames labelled with GFN2-xTB with 2 unpaired electron(s) (python -m "
                           "physnetjax.data.generate --molecule STRUCTURE --method GFN2-xTB --uhf 2 --out start.npz, "
                           "then --data start.npz)"), err[0]
    assert not out.exists()


def test_test_frames_in_other_units_are_refused_before_training(stub_data, tmp_path, capsys, monkeypatch):
    """A --test file in kcal/mol was accepted: every round's test error compared eV models with kcal/mol labels."""
    directory, label = stub_data
    path = rewritten(directory, tmp_path, "kcal_test.npz", source="test.npz", E=lambda E: E * 23.06,
                     F=lambda F: F * 23.06)
    err, counting, out = refused_start(label, tmp_path, capsys, monkeypatch, "--data", str(directory / "initial.npz"),
                                       "--test", str(path))
    assert err[0].startswith(f"python -m physnetjax.learn: error: --test {path}: its labels are not those of GFN2-xTB, "
                             f"which labels the loop's new frames (compared on {path}[0], ")
    assert "the forces are 23.06 × GFN2-xTB's, as for kcal/mol/Å read as eV/Å" in err[0]
    assert ("The per-round test errors would compare the models, trained on the labeller's labels, with other labels: "
            "read the file in its units and force sign (--energy-unit, --force-unit, --force-sign -1)") in err[0]
    assert counting.calls == 4  # two starting frames, then two test frames
    assert not out.exists()


def test_a_python_labeller_is_named_as_the_labeller(stub_data, tmp_path):
    from physnetjax.errors import PhysNetInputError

    directory, label = stub_data
    path = rewritten(directory, tmp_path, "sign.npz", F=lambda F: -F)
    with pytest.raises(PhysNetInputError, match=r"its labels are not those of the labeller, .*: the forces are −1 × "
                                                r"the labeller's: .* or start from frames labelled with the "
                                                r"labeller$"):
        run_learning(tiny_config(directory, tmp_path / "run", data=str(path)), label)


def test_starting_labels_are_checked_once_with_two_labeller_calls(stub_data, tmp_path, monkeypatch):
    """The check labels two starting frames when the run starts, and is not made again on a resume."""
    directory, label = stub_data
    monkeypatch.setattr(learn_loop, "train", lambda config, names: {"valid": {"forces_mae": 0.1}})
    config = tiny_config(directory, tmp_path / "run", rounds=0, test=None)
    first = Counting(label)
    run_learning(config, first)
    assert first.calls == 2
    resumed = Counting(label)
    run_learning(config, resumed)
    assert resumed.calls == 0


@pytest.mark.parametrize("key, name", [("F", "forces"), ("E", "energies")])
@pytest.mark.parametrize("option", ["--data", "--test"])
def test_frames_without_energy_or_forces_name_the_file_and_the_key(stub_data, tmp_path, capsys, monkeypatch, key,
                                                                   name, option):
    """noF.npz and noE.npz gave one message naming the run's internal copy OUT/initial.npz, not the file or key."""
    from physnetjax.learn.__main__ import main

    directory, label = stub_data
    path = rewritten(directory, tmp_path, f"no{key}.npz", **{key: None})
    monkeypatch.setattr(learn_loop, "xtb_labeller", labeller_factory([], label))
    monkeypatch.setattr(learn_loop, "train", no_training)
    files = {"--data": str(directory / "initial.npz"), "--test": str(directory / "test.npz"), option: str(path)}
    out = tmp_path / "run"
    assert main(["--out", str(out), "--data", files["--data"], "--test", files["--test"], "--rounds", "0",
                 "--ensemble", "2", "--features", "8", "--valid", "2"]) == 2
    assert capsys.readouterr().err == (f"python -m physnetjax.learn: error: {option} {path} has no {name} (key "
                                       f"'{key}'): the learning loop trains on energies and forces and labels its "
                                       "new frames with both; give frames with both labels (E in eV, F = −dE/dR in "
                                       "eV/Å)\n")
    assert not out.exists()


def test_the_data_checks_hints_name_the_loops_own_reading_options(stub_data, tmp_path, monkeypatch):
    """The data checks' hints ("pass --energy-unit and --force-unit", "pass --force-sign -1", "--keys") name options
    learn has: its --data and --test files are read with them (test_data_read_with_units_sign_and_keys_start_the_run
    _as_in_ev)."""
    directory, label = stub_data
    bundled = load_dataset(bundled_dataset_path()).subset(np.arange(300))  # enough nearby pairs for the sign

    def train_warning(config, names=None):  # the trainer's label checks, on data in kcal/mol and with F = +dE/dR
        check_label_sanity(dataclasses.replace(bundled, E=bundled.E * 23.06, F=bundled.F * 23.06), "kcal.npz")
        check_label_sanity(dataclasses.replace(bundled, F=-bundled.F), "sign.npz")
        return {"valid": {"forces_mae": 0.1}}

    monkeypatch.setattr(learn_loop, "train", train_warning)
    path = tmp_path / "gradients.npz"
    np.savez(path, **np.load(directory / "initial.npz"), gradients=np.zeros(1))  # a label-like key not read
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run_learning(tiny_config(directory, tmp_path / "run", data=str(path), rounds=0, test=None), label)
    messages = [str(w.message) for w in caught]
    assert any(m.startswith("kcal.npz: RMS force component") and
               m.endswith("pass --energy-unit and --force-unit with the units the file holds") for m in messages)
    assert any(m.startswith("sign.npz: the forces have the opposite sign") and "pass --force-sign -1" in m
               for m in messages)
    assert any("label-like keys not read: 'gradients'" in m and "--keys" in m for m in messages)
    parser_options = {option for action in build_parser()._actions for option in action.option_strings}
    assert set(UNIT_OPTIONS) | {"--keys"} <= parser_options


KCAL_PER_MOL_IN_EV = 4.184e3 / 6.02214076e23 / 1.602176634e-19


@pytest.mark.parametrize("case", ["kcal", "gradients", "renamed"])
def test_data_read_with_units_sign_and_keys_start_the_run_as_in_ev(stub_data, tmp_path, monkeypatch, case):
    """A kcal/mol file (--energy-unit kcal/mol), one of gradients (--force-sign -1) and one under rMD17's key names
    (--keys), as --data and --test: refused as not the labeller's labels before these options, now read into the
    same eV, eV/Å, F = −dE/dR frames the loop keeps (initial.npz, test.npz) as the stub's own files give."""
    from physnetjax.learn.__main__ import main

    directory, label = stub_data
    changes, options = {
        "kcal": ({"E": lambda E: E / KCAL_PER_MOL_IN_EV, "F": lambda F: F / KCAL_PER_MOL_IN_EV},
                 ["--energy-unit", "kcal/mol"]),
        "gradients": ({"F": lambda F: -F}, ["--force-sign", "-1"]),
        "renamed": ({}, ["--keys", "E=energies", "F=forces", "R=coords", "Z=nuclear_charges"]),
    }[case]
    files = {}
    for name in ("initial.npz", "test.npz"):
        raw = {key: (changes[key](value) if key in changes else value)
               for key, value in np.load(directory / name).items()}
        if case == "renamed":
            raw = {{"E": "energies", "F": "forces", "R": "coords", "Z": "nuclear_charges"}.get(key, key): value
                   for key, value in raw.items()}
        files[name] = tmp_path / f"{case}-{name}"
        np.savez(files[name], **raw)
    monkeypatch.setattr(learn_loop, "xtb_labeller", labeller_factory([], label))
    monkeypatch.setattr(learn_loop, "train", lambda config, names=None: {"valid": {"forces_mae": 0.1}})
    monkeypatch.setattr(learn_loop, "test_errors", lambda checkpoint, test: {"forces_mae": 0.1, "energy_mae": 0.1})
    out = tmp_path / "run"
    assert main(["--out", str(out), "--data", str(files["initial.npz"]), "--test", str(files["test.npz"]),
                 *options, "--rounds", "0", "--ensemble", "2", "--features", "8", "--valid", "2"]) == 0
    for name in ("initial.npz", "test.npz"):
        kept, expected = load_dataset(out / name), load_dataset(directory / name)
        np.testing.assert_allclose(kept.E, expected.E, rtol=1e-12)
        np.testing.assert_allclose(kept.F, expected.F, rtol=1e-6, atol=1e-9)  # F stored as float32 by the stub's file
        np.testing.assert_array_equal(kept.R, expected.R)


def test_reading_options_without_a_file_to_read_are_refused(capsys, tmp_path, monkeypatch):
    from physnetjax.learn.__main__ import main

    monkeypatch.setattr(learn_loop, "xtb_labeller", no_training)  # a run that starts fails at once
    assert main(["--out", str(tmp_path / "run"), "--energy-unit", "kcal/mol", "--force-sign", "-1"]) == 2
    assert ("--energy-unit, --force-sign: apply to the --data and --test files, and neither is given (the bundled set "
            "is read as it is: eV, eV/Å, F = -dE/dR, the PhysNet keys)") in capsys.readouterr().err
    assert main(["--out", str(tmp_path / "run"), "--data", "x.npz", "--energy-unit", "kcal"]) == 2
    assert "unknown energy unit 'kcal'" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("which", ["data", "test"])
def test_a_data_file_that_is_the_runs_own_copy_is_refused(stub_data, tmp_path, which):
    """--data OUT/initial.npz (or --test OUT/test.npz) was replaced by the run's copy of its frames (a 20-frame
    subset of the user's 60) without a word."""
    import shutil

    from physnetjax.errors import OutputPathError

    directory, label = stub_data
    out = tmp_path / "run"
    out.mkdir()
    name = "initial.npz" if which == "data" else "test.npz"
    shutil.copy(directory / name, out / name)
    before = (out / name).read_bytes()
    with pytest.raises(OutputPathError, match=rf"the run's {name} .*{name} is also {which}: writing it would replace "
                                              "the input"):
        run_learning(tiny_config(directory, out, **{which: str(out / name)}), label)
    assert (out / name).read_bytes() == before


@pytest.mark.parametrize("held", ["test.npz", "round-001"])
def test_a_new_run_refuses_a_folder_holding_files_of_its_names(stub_data, tmp_path, held):
    """A folder of the user's with a test.npz (not given as --test) was written over by the run's copy of its test
    frames, and a round-001/ of theirs removed as an interrupted round."""
    from physnetjax.errors import OutputPathError

    directory, label = stub_data
    out = tmp_path / "project"
    out.mkdir()
    if held.startswith("round"):
        (out / held).mkdir()
    else:
        (out / held).write_text("mine")
    with pytest.raises(OutputPathError, match=re.escape(f"--out {out} holds {held} but no learning run (no "
                                                        "state.json): a new run writes files of those names there")):
        run_learning(tiny_config(directory, out), label)
    assert sorted(p.name for p in out.iterdir()) == [held]


def test_test_frames_that_are_starting_frames_are_refused_before_any_labelling(stub_data, tmp_path, capsys,
                                                                                 monkeypatch):
    """A --test file holding starting frames (here two of them, beside the test frames) was accepted: every round
    trained on them, so the learning curve's test errors were partly training errors."""
    directory, label = stub_data
    test, initial = dict(np.load(directory / "test.npz")), dict(np.load(directory / "initial.npz"))
    path = tmp_path / "mixed_test.npz"
    np.savez(path, **{key: np.concatenate([test[key], initial[key][[4, 1]]]) for key in test})
    err, counting, out = refused_start(label, tmp_path, capsys, monkeypatch, "--data", str(directory / "initial.npz"),
                                       "--test", str(path))
    assert err == [f"python -m physnetjax.learn: error: --test {path}: 2 of the {len(test['E']) + 2} frames are also "
                   f"starting frames in {directory / 'initial.npz'} (same atoms and positions): every round trains on "
                   "those, so their test errors would be training errors; give test frames held out of --data"]
    assert counting.calls == 0 and not out.exists()


def test_the_bundled_start_draws_its_test_frames_apart_from_the_initial_ones():
    """Without data or --test the loop starts from the bundled set: initial_frames and test_frames drawn from it
    without overlap (the test errors of every round are then on frames no round trained on)."""
    from physnetjax.data.frame_digests import dataset_digests
    from physnetjax.learn.config import LearnConfig

    start = learn_loop._start_data(LearnConfig(initial_frames=10, test_frames=5))
    initial, test = start["initial.npz"], start["test.npz"]
    bundled = set(dataset_digests(load_dataset(bundled_dataset_path())).tolist())
    initial_digests, test_digests = set(dataset_digests(initial).tolist()), set(dataset_digests(test).tolist())
    assert (len(initial_digests), len(test_digests)) == (10, 5)
    assert not initial_digests & test_digests and initial_digests | test_digests <= bundled


def _orthogonal_difference(F, fraction, seed=0):
    """A difference Δ with Σ Δ·F = 0 (so the least-squares factor of F + Δ on F is 1) and RMS(Δ) = fraction · RMS(F)."""
    delta = np.random.default_rng(seed).standard_normal(F.shape)
    delta -= np.sum(delta * F) / np.sum(F * F) * F
    return delta * fraction * np.sqrt(np.mean(F**2)) / np.sqrt(np.mean(delta**2))


def test_label_findings_state_the_relative_force_difference_and_the_factor_of_another_method():
    from physnetjax.learn.inputs import label_findings

    F = np.random.default_rng(1).standard_normal((2, 5, 3)) * 3.0
    E = np.array([-100.0, -100.5])
    findings = label_findings(E, list(F + _orthogonal_difference(F, 0.25)), E, list(F), np.array([5.0, 5.0]), "xTB")
    assert findings == ["the forces differ from xTB's by 25 % RMS (least-squares factor 1; tolerance 1 %)"]
    scaled = label_findings(E, list(1.5 * F), E, list(F), np.array([5.0, 5.0]), "xTB")  # no unit's ratio
    assert scaled == ["the forces differ from xTB's by 50 % RMS (least-squares factor 1.5; tolerance 1 %)"]
    # 23.06 × the forces is kcal/mol/Å read as eV/Å only when the factor explains them, not beside a 30 % difference:
    # RMS(F_file − F) / RMS(F) = √(22.06² + (0.3 · 23.06)²) = 23.12
    noisy = label_findings(E, list(23.06 * F + 23.06 * _orthogonal_difference(F, 0.3)), E, list(F),
                           np.array([5.0, 5.0]), "xTB")
    assert noisy == ["the forces differ from xTB's by 2.31e+03 % RMS (least-squares factor 23.06; tolerance 1 %)"]


@pytest.mark.parametrize("rms", [0.05, 3.0, 40.0])
def test_the_force_tolerance_is_relative_to_the_labellers_forces_plus_a_floor(rms):
    """RMS(F_file − F_label) ≤ 1 % · RMS(F_label) + 1e-3 eV/Å agrees: at 0.95 of that bound no finding, at 1.05 one,
    for forces of any size (weak ones near a minimum, where the floor dominates, and strong ones)."""
    from physnetjax.learn.inputs import FORCE_FLOOR, FORCE_TOLERANCE, label_findings

    F = np.random.default_rng(2).standard_normal((2, 5, 3))
    F *= rms / np.sqrt(np.mean(F**2))
    bound = FORCE_TOLERANCE * rms + FORCE_FLOOR
    E = np.array([-10.0, -10.2])
    for factor, agrees in ((0.95, True), (1.05, False)):
        file_F = F + _orthogonal_difference(F, factor * bound / rms, seed=3)
        findings = label_findings(E, list(file_F), E, list(F), np.array([5.0, 5.0]), "xTB")
        assert (findings == []) == agrees, (factor, findings)


def test_energies_agree_within_1e_3_ev_per_atom_and_a_shared_offset_is_named():
    from physnetjax.learn.inputs import label_findings

    F = np.random.default_rng(4).standard_normal((2, 4, 3))
    E = np.array([-50.0, -50.3])
    atoms = np.array([4.0, 4.0])
    assert label_findings(E + 0.95e-3 * 4, list(F), E, list(F), atoms, "xTB") == []
    assert label_findings(E + np.array([1.05e-3 * 4, 0.0]), list(F), E, list(F), atoms, "xTB") == [
        "the energies differ from xTB's by up to 0.00105 eV/atom (tolerance 0.001 eV/atom)"]
    assert label_findings(E + 2.5, list(F), E, list(F), atoms, "xTB") == [
        "the energies are offset by a constant +2.5 eV from xTB's (another reference energy, e.g. atomization "
        "energies: subtract it from the file's E)"]
    # offsets 2.5 and 2.503 eV on 4 atoms differ by 0.00075 eV/atom: one constant (their mean) within the tolerance
    assert label_findings(E + np.array([2.5, 2.503]), list(F), E, list(F), atoms, "xTB") == [
        "the energies are offset by a constant +2.5015 eV from xTB's (another reference energy, e.g. atomization "
        "energies: subtract it from the file's E)"]
    # no constant offset: on frames of two sizes, on one frame, or beside the forces of another method
    differ = ["the energies differ from xTB's by up to 0.625 eV/atom (tolerance 0.001 eV/atom)"]
    assert label_findings(E + 2.5, list(F), E, list(F), np.array([4.0, 5.0]), "xTB") == differ
    assert label_findings(E[:1] + 2.5, list(F[:1]), E[:1], list(F[:1]), atoms[:1], "xTB") == differ
    other = label_findings(E + 2.5, list(F + _orthogonal_difference(F, 0.2)), E, list(F), atoms, "xTB")
    assert other == ["the forces differ from xTB's by 20 % RMS (least-squares factor 1; tolerance 1 %)", differ[0]]


def test_check_frames_take_the_first_frame_and_the_next_of_its_composition():
    """An offset is told from a scale only on two frames of one composition: frame 0, then the next frame with its
    atoms (frame 2 here, after a frame of methane), else the next frame."""
    from physnetjax.learn.inputs import check_frames

    class Frames:
        def __init__(self, Z):
            self.Z, self.N = np.array(Z), np.count_nonzero(Z, axis=1)

        def __len__(self):
            return len(self.Z)

    water, methane = [8, 1, 1, 0, 0], [6, 1, 1, 1, 1]
    assert check_frames(Frames([water, methane, water, methane])) == [0, 2]
    assert check_frames(Frames([water, methane, methane])) == [0, 1]


@pytest.mark.parametrize("missing, listed", [([1, 3], "[1], [3]:"), ([1, 3, 4], "[1], [3], [4]:"),
                                             ([1, 3, 4, 5], "[1], [3], [4], ...:")])
def test_frames_partly_without_forces_are_counted_and_the_first_three_named(stub_data, missing, listed):
    from physnetjax.errors import PhysNetInputError
    from physnetjax.learn.inputs import check_labelled

    directory, _ = stub_data
    data = load_dataset(directory / "initial.npz")
    has_F = np.ones(len(data), bool)
    has_F[missing] = False
    path = directory / "initial.npz"
    names = ", ".join(f"{path}{item}" for item in listed[:-1].split(", ") if item != "...")
    expected = (f"start.npz has {len(missing)} of its 8 starting frames without forces (key 'F'): {names}"
                + (", ...:" if "..." in listed else ":") + " the learning loop trains on energies and forces")
    with pytest.raises(PhysNetInputError, match=re.escape(expected)):
        check_labelled(dataclasses.replace(data, has_F=has_F), "start.npz")
