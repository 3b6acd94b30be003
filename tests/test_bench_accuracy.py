"""The split and error helpers of benchmarks/bench_accuracy.py on synthetic frames (no peer trainer needed)."""

import pathlib
import sys

import numpy as np
import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "benchmarks"))

from bench_accuracy import check_no_leak, split_without_leak, held_out_errors  # noqa: E402
from physnetjax.data import Dataset  # noqa: E402


def frames(count: int, atoms: int = 3, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(count, atoms, 3))


def test_split_is_disjoint_complete_and_seeded():
    positions = frames(20)
    split = split_without_leak(positions, 14, 3, 3, seed=1)
    assert [len(split[k]) for k in ("train", "valid", "test")] == [14, 3, 3]
    assert sorted(np.concatenate([split[k] for k in ("train", "valid", "test")]).tolist()) == list(range(20))
    again = split_without_leak(positions, 14, 3, 3, seed=1)
    other = split_without_leak(positions, 14, 3, 3, seed=2)
    assert all(np.array_equal(split[k], again[k]) for k in split)
    assert not np.array_equal(split["test"], other["test"])


def test_duplicated_test_geometry_in_training_is_a_leak():
    positions = frames(20)
    split = split_without_leak(positions, 14, 3, 3, seed=1)
    positions[split["test"][0]] = positions[split["train"][5]]
    with pytest.raises(ValueError, match="geometry of a training/validation frame"):
        split_without_leak(positions, 14, 3, 3, seed=1)


def test_shared_index_is_a_leak():
    with pytest.raises(ValueError, match="train and test share frames"):
        check_no_leak(frames(5), {"train": np.array([0, 1, 2]), "valid": np.array([3]), "test": np.array([2, 4])})


def test_empty_part_is_refused():
    with pytest.raises(ValueError, match="every part needs >= 1 frame"):
        split_without_leak(frames(5), 4, 1, 0, seed=0)


def test_errors_skip_padded_atoms():
    zeros = np.zeros(2)
    reference = Dataset(Z=np.array([[1, 0], [1, 1]]), R=np.zeros((2, 2, 3)), N=np.array([1, 2]),
                        E=np.array([1.0, -2.0]), F=np.array([[[1.0, 0, 0], [0, 0, 0]], [[0, 2.0, 0], [0, 0, -1.0]]]),
                        D=np.zeros((2, 3)), Q=zeros, has_E=np.ones(2, bool), has_F=np.ones(2, bool),
                        has_D=np.zeros(2, bool), has_Q=np.zeros(2, bool), sources=np.array(["a", "b"]))
    predicted_forces = np.array([[[1.5, 0, 0], [9.0, 9.0, 9.0]], [[0, 2.0, 0], [0, 0, 0.5]]])
    errors = held_out_errors(np.array([1.25, -1.0]), predicted_forces, reference)
    # |ΔE| = 0.25, 1.0 → 0.625; 9 real force components with |ΔF| 0.5 and 1.5, the padded atom ignored.
    assert errors["energy_mae_eV"] == pytest.approx(0.625, abs=1e-15)
    assert errors["forces_mae_eV_per_A"] == pytest.approx(2.0 / 9.0, abs=1e-15)
