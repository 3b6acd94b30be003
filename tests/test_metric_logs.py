"""JSON Lines run logs: training's metrics.jsonl equals metrics.csv row by row and a resume keeps them
consistent; MD's <out>.jsonl equals the saved frames and a restart drops the lines after its step."""

import csv
import json
import shutil
from pathlib import Path

import ase
import ase.io
import jax
import numpy as np
import pytest

from physnetjax import PhysNet, init_params
from physnetjax.errors import PhysNetInputError, PhysNetInputWarning
from physnetjax.jsonlines import append_record, read_log, start_log
from physnetjax.md.driver import LOG_KEYS, simulate
from physnetjax.train import resume, train
from physnetjax.train.loop import CSV_COLUMNS
from physnetjax.units import BOLTZMANN
from test_train import tiny_config


def read_csv(path) -> list[dict]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def read_jsonl(path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text().splitlines()]


def assert_lines_equal_csv(run_dir):
    rows, lines = read_csv(run_dir / "metrics.csv"), read_jsonl(run_dir / "metrics.jsonl")
    assert len(rows) == len(lines)
    for row, line in zip(rows, lines):
        assert list(line) == list(CSV_COLUMNS) == list(row)
        for key, value in row.items():
            assert line[key] == (None if value == "" else float(value)), key
        assert isinstance(line["epoch"], int) and isinstance(line["best"], int)


def test_training_log_equals_csv_and_resume_truncates_like_it(tmp_path):
    out = tmp_path / "run"
    train(tiny_config(out, epochs=2))  # test_train's settings: the compiled steps are shared in one session
    assert_lines_equal_csv(out)
    before = read_jsonl(out / "metrics.jsonl")
    assert [line["epoch"] for line in before] == [1, 2]
    assert before[1]["valid_dipole_mae"] is None  # no charges: empty CSV cell, JSON null
    # A run killed after logging epoch 3 but before its checkpoint: both logs hold an epoch the
    # checkpoint does not; resuming from epoch 2 must drop it from both.
    with open(out / "metrics.csv", "a", newline="") as handle:
        csv.DictWriter(handle, CSV_COLUMNS).writerow({"epoch": 3, "train_loss": 99.0})
    with open(out / "metrics.jsonl", "a") as handle:
        handle.write(json.dumps({"epoch": 3, "train_loss": 99.0}) + "\n")
    resume(out, epochs=3)
    assert_lines_equal_csv(out)
    after = read_jsonl(out / "metrics.jsonl")
    assert [line["epoch"] for line in after] == [1, 2, 3]
    assert after[:2] == before and after[2]["train_loss"] != 99.0


@pytest.fixture(scope="module")
def md_system(molecules):
    jax.config.update("jax_enable_x64", True)
    model = PhysNet(features=8, max_degree=1, num_iterations=1, num_basis_functions=8, cutoff=4.0,
                    max_atomic_number=8, charges=False, zbl=False, n_res=1)
    rng = np.random.default_rng(0)
    shapes = jax.eval_shape(lambda: init_params(model, 0))
    params = jax.tree_util.tree_map(lambda s: rng.normal(0.0, 0.3, s.shape).astype(np.float32), shapes)
    z, r = molecules["ethanol"]
    return model, params, ase.Atoms(numbers=z, positions=r)


def test_md_log_equals_frames_and_restart_drops_later_lines(md_system, tmp_path):
    model, params, atoms = md_system
    out, state = tmp_path / "md.xyz", tmp_path / "state.npz"

    def keep_step_10(done):
        if done == 10:
            shutil.copy(state, tmp_path / "state10.npz")

    common = dict(ensemble="nve", temperature_K=300.0, timestep_fs=0.5, save_every=5, chunk_frames=2,
                  dtype="float64", checkpoint_every=1)
    simulate(model, params, atoms, steps=20, out=str(out), checkpoint_path=str(state), progress=keep_step_10,
             **common)
    lines = read_jsonl(f"{out}.jsonl")
    frames = ase.io.read(out, index=":")
    assert [line["step"] for line in lines] == [5, 10, 15, 20]
    for line, frame in zip(lines, frames):
        assert list(line) == list(LOG_KEYS)
        for key in ("step", "time_fs", "temperature_K", "conserved_eV"):
            assert line[key] == pytest.approx(frame.info[key], rel=1e-12), key
        assert line["potential_energy_eV"] == pytest.approx(frame.get_potential_energy(), rel=1e-12)
        dof = 3 * len(atoms) - 3
        assert line["kinetic_energy_eV"] == pytest.approx(frame.info["temperature_K"] * dof * BOLTZMANN / 2, rel=1e-12)
        # ASE's value comes from momenta stored with 8 decimals in the extxyz file.
        assert line["kinetic_energy_eV"] == pytest.approx(frame.get_kinetic_energy(), rel=1e-6)
        # forces are stored with 8 decimals: |F_i| is off by at most 0.5e-8 · √3 eV/Å.
        np.testing.assert_allclose(line["max_force_eV_per_A"], np.linalg.norm(frame.get_forces(), axis=1).max(),
                                   rtol=0, atol=0.5e-8 * 3 ** 0.5)
        assert line["max_force_eV_per_A"] > 0.01
    with pytest.warns(PhysNetInputWarning, match=r"dropped 2 frame\(s\) written after the MD checkpoint \(step 10\)"):
        simulate(model, params, atoms, steps=20, out=str(out), restart=str(tmp_path / "state10.npz"), **common)
    restarted = read_jsonl(f"{out}.jsonl")
    assert [line["step"] for line in restarted] == [5, 10, 15, 20, 25, 30]
    assert restarted[:2] == lines[:2]
    for again, first in zip(restarted[2:4], lines[2:4]):
        for key in LOG_KEYS:
            assert again[key] == pytest.approx(first[key], rel=1e-10), key


def test_read_log_round_trips_records_and_names_a_damaged_line(tmp_path):
    """start_log/append_record/read_log: NaN and Inf become null, NumPy scalars plain numbers, blank lines are
    skipped; a line cut short, a line that is no object and a file that is no UTF-8 text name file and line."""
    path = tmp_path / "run.jsonl"
    assert read_log(path) == []
    start_log(path, [{"step": np.int64(1), "energy": np.float32(-1.5)}])
    append_record(path, {"step": 2, "energy": float("nan"), "temperature": float("inf")})
    with open(path, "a", encoding="utf-8") as handle:
        handle.write("\n   \n")
    assert read_log(path) == [{"step": 1, "energy": -1.5}, {"step": 2, "energy": None, "temperature": None}]
    for text, message in [('{"step": 3, "ener\n', r"run\.jsonl, line 2: not a JSON record"),
                          ("[1, 2]\n", r"run\.jsonl, line 2: a JSON list, not a record \(object\)")]:
        path.write_text('{"step": 1}\n' + text, encoding="utf-8")
        with pytest.raises(PhysNetInputError, match=message + ".*remove that line or move the file away"):
            read_log(path)
    path.write_bytes(b'{"step": 1}\n\xff\xfe\n')
    with pytest.raises(PhysNetInputError, match=r"run\.jsonl: not a JSON Lines text file"):
        read_log(path)
