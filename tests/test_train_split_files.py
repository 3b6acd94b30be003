"""Validation and test splits from files of their own (``--valid-data``, ``--test-data``), as MACE's
``--valid_file``/``--test_file``: a benchmark's fixed test set is the test split, never a share of the training files.
"""

import re
import warnings
from pathlib import Path

import numpy as np
import pytest

from physnetjax.data import load_dataset
from physnetjax.data.dataset import load_dataset_parts
from physnetjax.data.split import split_with_held_out_files
from physnetjax.errors import PhysNetInputWarning
from physnetjax.train import TrainConfig, Trainer, resume, train

DATA = Path(__file__).parent / "data" / "train_ethanol64.npz"
TINY = dict(features=8, max_degree=0, num_iterations=1, n_res=1, num_basis_functions=4, cutoff=4.0, batch_size=8,
            epochs=1, schedule="constant", progress=False, plots=False)


def write_frames(path, frames) -> str:
    with np.load(DATA) as npz:
        np.savez(path, **{key: npz[key][frames] for key in npz.files})
    return str(path)


@pytest.fixture
def files(tmp_path):
    """The 64 ethanol frames as training (0-39), validation (40-49) and test (50-63) files."""
    return (write_frames(tmp_path / "train.npz", slice(0, 40)), write_frames(tmp_path / "valid.npz", slice(40, 50)),
            write_frames(tmp_path / "test.npz", slice(50, 64)))


def check_partition(split, num_frames):
    together = np.concatenate([split[name] for name in ("train", "valid", "test")])
    assert np.array_equal(np.sort(together), np.arange(num_frames))  # disjoint, and every frame in one part
    assert all(np.array_equal(part, np.sort(part)) and part.dtype == np.int64 for part in split.values())


def test_a_part_with_files_is_exactly_their_frames_and_a_part_without_a_share_of_the_data_frames():
    test_files = split_with_held_out_files(40, 0, 14, valid=0.25, seed=3)
    check_partition(test_files, 54)
    assert np.array_equal(test_files["test"], np.arange(40, 54)) and len(test_files["valid"]) == 10
    assert test_files["valid"].max() < 40 and len(test_files["train"]) == 30

    valid_files = split_with_held_out_files(40, 10, 0, test=5, seed=3)
    check_partition(valid_files, 50)
    assert np.array_equal(valid_files["valid"], np.arange(40, 50))
    assert len(valid_files["test"]) == 5 and valid_files["test"].max() < 40 and len(valid_files["train"]) == 35

    both = split_with_held_out_files(40, 10, 14, seed=3)
    check_partition(both, 64)
    assert np.array_equal(both["train"], np.arange(40)) and np.array_equal(both["valid"], np.arange(40, 50))

    counted = split_with_held_out_files(40, 10, 14, train=12, seed=3)
    assert len(counted["train"]) == 12 and counted["train"].max() < 40  # a training count picks from the data frames
    # main: "... lower test or train", but the test frames were --test-data's, and --test is refused beside it
    with pytest.raises(ValueError, match=re.escape("cannot split the 40 frame(s) of the data files into 41 training "
                                                   "and 0 test frames; lower train") + "$"):
        split_with_held_out_files(40, 10, 14, train=41)
    check_partition(split_with_held_out_files(40, 10, 0, test=5, train=35, seed=3), 50)  # all data frames used
    assert len(split_with_held_out_files(40, 10, 0, test=39, seed=3)["train"]) == 1
    for sizes, settings in [(dict(test=5, train=36), "lower --test or --train"), (dict(test=40), "lower --test")]:
        with pytest.raises(ValueError, match=re.escape(f"frames; {settings}") + "$"):
            split_with_held_out_files(40, 10, 0, seed=3, names={"test": "--test", "train": "--train"}, **sizes)


def test_the_settings_that_would_do_nothing_or_contradict_the_files_are_refused():
    names = {"valid": "--valid", "test": "--test", "valid_data": "--valid-data", "test_data": "--test-data",
             "split_file": "--split-file", "data": "--data"}
    for settings, message in [
        (dict(valid_data=["v.npz"], valid=0.2), "--valid 0.2 does nothing with --valid-data: the validation frames "
                                                "are those files'"),
        (dict(test_data=["t.npz"], test=5), "--test 5 does nothing with --test-data: the test frames are those files'"),
        (dict(test_data=["t.npz"], split_file="s.npz"), "--split-file indexes the frames of --data and cannot be "
                                                        "combined with --test-data: give the split one way"),
        (dict(valid_data=[]), "--valid-data names no file"),
    ]:
        with pytest.raises(ValueError, match=re.escape(message)):
            TrainConfig(**settings, names=names)
    assert TrainConfig(test_data=["t.npz"], test=0.1).test_data == ["t.npz"]  # the default share: not given


def test_the_trainer_validates_and_tests_on_the_files_frames(files, tmp_path):
    train_file, valid_file, test_file = files
    (tmp_path / "run").mkdir()
    with warnings.catch_warnings():
        warnings.simplefilter("error", PhysNetInputWarning)  # held-out frames of the training chemistry: no warning
        trainer = Trainer(TrainConfig(data=[train_file], valid_data=[valid_file], test_data=[test_file],
                                      out=str(tmp_path / "run"), **TINY), tmp_path / "run", resuming=False)
    assert trainer.part_frames == {"training": 40, "validation": 10, "test": 14}
    reference = load_dataset(DATA)
    for name, frames in (("train", np.arange(40)), ("valid", np.arange(40, 50)), ("test", np.arange(50, 64))):
        np.testing.assert_array_equal(trainer.dataset.R[trainer.split[name]][:, :9], reference.R[frames])
        np.testing.assert_array_equal(trainer.dataset.E[trainer.split[name]], reference.E[frames])
    assert list(trainer.data_sha256) == [train_file, valid_file, test_file]


def test_a_test_frame_that_is_also_a_training_frame_warns(files, tmp_path):
    train_file, _, test_file = files
    leaky = write_frames(tmp_path / "leaky.npz", [3])
    with pytest.warns(PhysNetInputWarning, match=re.escape(f"1 frame(s) of the test files are also among the "
                                                           f"training files' (e.g. {leaky}[0] = {train_file}[3])")):
        _, frames = load_dataset_parts({"training": [train_file], "test": [test_file, leaky]})
    assert frames == {"training": 40, "test": 15}


def test_a_resume_finds_moved_test_files_by_their_content(files, tmp_path):
    train_file, _, test_file = files
    run = tmp_path / "run"
    first = train(TrainConfig(data=[train_file], test_data=[test_file], out=str(run), **TINY))
    moved = tmp_path / "moved_test.npz"
    Path(test_file).rename(moved)
    with pytest.raises(FileNotFoundError, match=re.escape(f"{test_file}, the test data of {run} (its config.json "
                                                          "'test_data'), does not exist (moved or deleted?): give its "
                                                          "new path with --test-data")):
        resume(run, epochs=2)
    again = resume(run, epochs=2, test_data=[str(moved)])
    assert again["epochs_run"] == 2 and first["frames"]["test"] == again["frames"]["test"] == 14


def test_held_out_frames_of_other_elements_or_compositions_than_trained_warn(files, tmp_path):
    """A test file of other molecules: an ethanol model tested on base pairs reported a test energy MAE of
    11,700 eV (nitrogen's E0 never fitted) without a word."""
    train_file, _, _ = files
    with np.load(DATA) as npz:
        arrays = {key: npz[key][50:60].copy() for key in npz.files}
    hydrogen = int(np.nonzero(arrays["Z"][0] == 1)[0][0])
    oxygen = int(np.nonzero(arrays["Z"][0] == 8)[0][0])
    arrays["Z"][:5, hydrogen] = 6  # C3H5O: trained elements, a composition outside the training span (C2H6O)
    arrays["Z"][5:, oxygen] = 7  # C2H6N: an element never trained on
    np.savez(tmp_path / "other.npz", **arrays)
    (tmp_path / "run").mkdir()
    with pytest.warns(PhysNetInputWarning) as caught:
        Trainer(TrainConfig(data=[train_file], test_data=[str(tmp_path / "other.npz")], out=str(tmp_path / "run"),
                            **TINY), tmp_path / "run", resuming=False)
    messages = [str(w.message) for w in caught]
    assert any(m.startswith("the test split: element(s) N (Z=7) (in 5 of 10 frames, first frame 5) never occurred "
                            "in this model's training data") for m in messages), messages
    assert any(m.startswith("the test split: composition(s) C3H5O (5 frames, first 0)") and
               "its test energy errors include that offset" in m for m in messages), messages


def test_reading_options_are_checked_when_the_settings_are_made(tmp_path, capsys):
    """A unit the readers do not know, a force sign other than ±1 and a malformed key mapping are refused with the
    settings (before the data are read and the run directory is made), by the trainer's and the learning loop's."""
    from physnetjax.learn import LearnConfig
    from physnetjax.train import TrainConfig
    from physnetjax.train.cli import main

    for make in (TrainConfig, lambda **kw: LearnConfig(data="x.npz", **kw)):
        with pytest.raises(ValueError, match=r"energy_unit/force_unit/dipole_unit: unknown energy unit 'kcal'"):
            make(energy_unit="kcal")
        with pytest.raises(ValueError, match=r"energy_unit/force_unit/dipole_unit: force unit must look like "
                                             r"ENERGY/LENGTH"):
            make(force_unit="eV")
        with pytest.raises(ValueError, match=r"force_sign must be 1 \(F = -dE/dR\) or -1"):
            make(force_sign=0)
        with pytest.raises(ValueError, match=r"keys: "):
            make(keys=["E"])
    assert main(["--out", str(tmp_path / "run"), "--dipole-unit", "furlong"]) == 2
    assert "--energy-unit/--force-unit/--dipole-unit: unknown dipole unit 'furlong'" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()
