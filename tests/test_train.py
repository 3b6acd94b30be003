"""The trainer: loss goes down, EMA weights are saved and reproduce the logged metrics, exact resume,
unit conversion, label masking, the float64 force check, SIGKILL safety and 1 vs 2 devices."""

import csv
import dataclasses
import itertools
import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import jax
import numpy as np
import pytest

from physnetjax.checkpoint import load_checkpoint, load_train_state
from physnetjax.errors import PhysNetInputError, PhysNetInputWarning
from physnetjax.predict import predict
from physnetjax.train import ForceCheckError, TrainConfig, Trainer, resume, train

DATA = Path(__file__).parent / "data" / "train_ethanol64.npz"
KCAL_PER_MOL_IN_EV = 4.184e3 / 6.02214076e23 / 1.602176634e-19
TINY = dict(features=8, max_degree=1, num_iterations=2, n_res=1, num_basis_functions=8, cutoff=5.0,
            train=24, valid=8, test=8, batch_size=4, learning_rate=1e-2, schedule="exponential",
            decay_epochs=2.0, decay_rate=0.5, progress=False, seed=0)


def tiny_config(out, **changes) -> TrainConfig:
    return TrainConfig(**{**TINY, "data": [str(DATA)], "epochs": 3, "out": str(out), "plots": False, **changes})


def read_rows(run_dir):
    with open(Path(run_dir) / "metrics.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def leaves(tree):
    return [np.asarray(x) for x in jax.tree_util.tree_leaves(tree)]


@pytest.fixture(scope="module")
def base_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("train") / "base"
    summary = train(tiny_config(out, plots=True))
    return out, summary


def test_loss_decreases_and_run_dir_is_complete(base_run):
    out, summary = base_run
    rows = read_rows(out)
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3]
    train_losses = [float(r["train_loss"]) for r in rows]
    valid_losses = [float(r["valid_loss"]) for r in rows]
    assert train_losses[-1] < train_losses[0]
    assert valid_losses[-1] < valid_losses[0]
    for name in ("config.json", "model.json", "split.npz", "metrics.json", "best", "latest"):
        assert (out / name).exists(), name
    history = json.loads((out / "metrics.json").read_text())
    assert len(history["epochs"]) == 3 and history["final"]["best_epoch"] == summary["best_epoch"]
    assert all(float(r["force_check_max_error"]) < 1e-4 for r in rows if r["best"] == "1")
    pytest.importorskip("matplotlib")
    for png in ("learning_curve.png", "parity_energy.png", "parity_forces.png"):
        assert (out / png).stat().st_size > 1000


def test_saved_weights_are_ema_and_reproduce_logged_validation_metrics(base_run):
    out, summary = base_run
    model, params, meta = load_checkpoint(out / "best", with_metadata=True)
    state = load_train_state(out / "best")
    for saved, ema, raw in zip(leaves(params), leaves(state["ema_params"]), leaves(state["params"])):
        np.testing.assert_array_equal(saved, ema)
    assert any(not np.array_equal(e, r) for e, r in zip(leaves(state["ema_params"]), leaves(state["params"])))
    assert model.element_energies is not None

    with np.load(DATA) as npz:
        Z, R, E, F = npz["Z"], npz["R"], npz["E"], npz["F"]
    with np.load(out / "split.npz") as split:
        valid = split["valid"]
    energy_errors, force_errors = [], []
    for k in valid:
        result = predict(model, params, Z[k], R[k].astype(np.float32))
        energy_errors.append(abs(result["energy"] - E[k]))
        force_errors.append(np.abs(result["forces"] - F[k]).ravel())
    logged = meta["metrics"]
    assert int(meta["epoch"]) == summary["best_epoch"]
    assert abs(np.mean(energy_errors) - logged["valid_energy_mae"]) < 3e-4
    assert abs(np.mean(np.concatenate(force_errors)) - logged["valid_forces_mae"]) < 1e-5


def test_a_loss_without_a_trainable_term_is_refused_before_training(tmp_path):
    """--energy-weight 0 --forces-weight 0 trained nothing (loss 0 every epoch, exit 0); so does a positive weight
    only on labels the frames lack. Refused before any run directory is made."""
    names = {"energy_weight": "--energy-weight", "forces_weight": "--forces-weight"}
    with pytest.raises(PhysNetInputError, match=r"^no loss term would train anything \(--energy-weight 0, "
                                                r"--forces-weight 0; the 24 training frames have energy, force "
                                                r"labels\): give a term with labels a positive weight$"):
        train(tiny_config(tmp_path / "zero", energy_weight=0.0, forces_weight=0.0), names=names)
    with np.load(DATA) as npz:
        arrays = {key: npz[key] for key in npz.files if key != "F"}
    np.savez(tmp_path / "no_forces.npz", **arrays)
    with pytest.raises(PhysNetInputError, match=r"\(energy_weight 0, forces_weight 50; the 24 training frames have "
                                                r"energy labels\)"):
        train(tiny_config(tmp_path / "zero", data=[str(tmp_path / "no_forces.npz")], energy_weight=0.0))
    assert not (tmp_path / "zero").exists()


def test_resume_equals_uninterrupted_run(base_run, tmp_path):
    out, _ = base_run
    interrupted = tmp_path / "interrupted"
    train(tiny_config(interrupted, epochs=2))
    with pytest.raises(ValueError, match="cannot change"):
        resume(interrupted, learning_rate=1.0)
    resume(interrupted, epochs=3)
    expected = load_train_state(out / "latest")
    resumed = load_train_state(interrupted / "latest")
    for a, b in zip(leaves(expected), leaves(resumed)):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    assert [r["epoch"] for r in read_rows(interrupted)] == ["1", "2", "3"]
    np.testing.assert_allclose([float(r["valid_loss"]) for r in read_rows(interrupted)],
                               [float(r["valid_loss"]) for r in read_rows(out)], rtol=1e-6)


def test_resume_refuses_a_truncated_metrics_csv(base_run, tmp_path):
    """On main a truncated metrics.csv was taken as the history: both it and the intact metrics.jsonl were rewritten
    with only the epochs after the checkpoint, every earlier row lost without a word."""
    out = shutil.copytree(base_run[0], tmp_path / "run", symlinks=True)
    history = (out / "metrics.jsonl").read_text()
    csv_text = (out / "metrics.csv").read_text()
    (out / "metrics.csv").write_text(csv_text.splitlines()[0] + "\n")
    with pytest.raises(ValueError, match=r"metrics\.csv is truncated or edited: the checkpoint is at epoch 3 but the "
                                         r"file holds the rows of 0 of those epochs; .*Restore it"):
        resume(out, epochs=4)
    assert (out / "metrics.jsonl").read_text() == history


def test_a_resume_interrupted_while_rewriting_the_metrics_keeps_them_and_can_be_repeated(base_run, tmp_path,
                                                                                          monkeypatch):
    """On main a resume emptied metrics.csv and metrics.jsonl and appended the kept rows one by one: Ctrl-C in
    between left both cut short, and every later resume was refused ('metrics.csv is truncated or edited'). Each
    file is now replaced in one step."""
    from physnetjax.train import loop

    out = shutil.copytree(base_run[0], tmp_path / "run", symlinks=True)
    before = {name: (out / name).read_text() for name in ("metrics.csv", "metrics.jsonl")}
    records, calls = loop._jsonl_record, []

    def interrupted_at_the_second_row(row, columns):
        calls.append(row)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return records(row, columns)

    monkeypatch.setattr(loop, "_jsonl_record", interrupted_at_the_second_row)
    with pytest.raises(KeyboardInterrupt):
        resume(out, epochs=4)
    assert {name: (out / name).read_text() for name in before} == before
    monkeypatch.undo()
    assert resume(out, epochs=4)["epochs_run"] == 4
    assert [r["epoch"] for r in read_rows(out)] == ["1", "2", "3", "4"]
    assert [r["epoch"] for r in map(json.loads, (out / "metrics.jsonl").read_text().splitlines())] == [1, 2, 3, 4]


def test_metrics_json_after_a_resume_holds_the_rows_the_run_wrote(base_run, tmp_path):
    """On main the rows a resume read back from metrics.csv came into metrics.json as floats with nulls ("epoch":
    1.0, "best": 1.0, "valid_dipole_mae": null) where the run itself had written 1, 1 and no dipole key; the
    epochs trained after the resume had the run's form, so one file held two."""
    out = shutil.copytree(base_run[0], tmp_path / "run", symlinks=True)
    before = json.loads((out / "metrics.json").read_text())["epochs"]
    resume(out, epochs=4)
    after = json.loads((out / "metrics.json").read_text())["epochs"]
    assert json.dumps(after[:3], sort_keys=True) == json.dumps(before, sort_keys=True)
    assert sorted(after[3]) == sorted(before[0]) and "valid_dipole_mae" not in after[0]
    assert [type(row["epoch"]) for row in after] == [int] * 4 and [type(row["best"]) for row in after] == [int] * 4


def test_a_metrics_csv_of_an_older_release_without_the_stress_columns_resumes(base_run, tmp_path):
    """The stress columns (valid_stress_mae/rmse) are new: a run started before them would have been refused on
    resume ("holds other columns than this run writes"). Its file is taken, the columns added, empty before."""
    out = shutil.copytree(base_run[0], tmp_path / "run", symlinks=True)
    with open(out / "metrics.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    header = [name for name in rows[0] if not name.startswith("valid_stress_")]
    assert len(header) == len(rows[0]) - 2
    with open(out / "metrics.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, header, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    assert resume(out, epochs=4)["epochs_run"] == 4
    resumed = read_rows(out)
    assert [r["epoch"] for r in resumed] == ["1", "2", "3", "4"]
    assert all(r["valid_stress_mae"] == "" for r in resumed) and resumed[0]["valid_loss"] == rows[0]["valid_loss"]


def test_resume_without_metrics_csv_names_metrics_jsonl(base_run, tmp_path):
    """On main a deleted metrics.csv gave only '.../metrics.csv does not exist', not that metrics.jsonl holds the
    same rows."""
    out = shutil.copytree(base_run[0], tmp_path / "run", symlinks=True)
    (out / "metrics.csv").unlink()
    with pytest.raises(FileNotFoundError, match=rf"^{out / 'metrics.csv'} does not exist: the checkpoint is at epoch "
                                                r"3, and resuming would start metrics\.csv and metrics\.jsonl anew "
                                                r"without the rows of those epochs\. Restore it \(metrics\.jsonl "
                                                r"holds the same rows as JSON Lines\)$"):
        resume(out, epochs=4)
    (out / "metrics.jsonl").unlink()
    with pytest.raises(FileNotFoundError, match=rf"Restore it from a copy, or start a new run with --init-from "
                                                rf"{out / 'best'}$"):
        resume(out, epochs=4)


def test_resume_refuses_a_metrics_csv_with_a_value_that_is_no_number(base_run, tmp_path):
    """On main a metrics.csv value edited to text stopped the resume with a bare 'could not convert string to float'
    that named no file."""
    out = shutil.copytree(base_run[0], tmp_path / "run", symlinks=True)
    lines = (out / "metrics.csv").read_text().splitlines()
    fields = lines[2].split(",")
    fields[2] = "abc"
    lines[2] = ",".join(fields)
    (out / "metrics.csv").write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match=r"metrics\.csv is truncated or edited: the checkpoint is at epoch 3 but the "
                                         r"file holds unreadable rows"):
        resume(out, epochs=4)


@pytest.mark.parametrize("edit", ["learning_rate", "batch_size"])
def test_resume_refuses_an_edited_config_json(base_run, tmp_path, edit):
    """On main a learning rate edited in a run's config.json, or a removed batch_size (back to its default), was
    taken up silently by the resume, which went on with other numbers than the run started with."""
    out = shutil.copytree(base_run[0], tmp_path / "run", symlinks=True)
    config = json.loads((out / "config.json").read_text())
    recorded = config[edit]
    if edit == "learning_rate":
        config["learning_rate"] = 0.5
    else:
        del config["batch_size"]
    (out / "config.json").write_text(json.dumps(config))
    now = 0.5 if edit == "learning_rate" else TrainConfig().batch_size
    with pytest.raises(PhysNetInputError, match=rf"config\.json does not hold the settings the run's checkpoint "
                                                rf".*epoch-0003 was trained with: {edit} = {now} \(the checkpoint's: "
                                                rf"{recorded}\); the file was edited after the run started"):
        resume(out, epochs=4)


def test_resume_names_a_config_json_that_is_no_text(tmp_path):
    """On main a run's config.json overwritten by binary data (a flipped byte, another file) stopped the resume with
    a bare "'utf-8' codec can't decode byte" that named no file."""
    (tmp_path / "config.json").write_bytes(b'{"epochs": 3\xff}')
    with pytest.raises(ValueError, match=r"config\.json: not a JSON text file \('utf-8' codec can't decode byte 0xff"):
        resume(tmp_path, epochs=4)


@pytest.mark.parametrize("key, value, expected", [("batch_size", "8", 'batch_size must be an integer, received "8"'),
                                                   ("learning_rate", None, "learning_rate must be a number, received "
                                                                           "null"),
                                                   ("charges", 1, "charges must be true or false, received 1")])
def test_resume_names_a_config_json_setting_of_the_wrong_type(tmp_path, key, value, expected):
    """On main a run's config.json with "batch_size": "8" stopped the resume with "'<' not supported between
    instances of 'str' and 'int'", and "charges": 1 was taken as true."""
    (tmp_path / "config.json").write_text(json.dumps({**TrainConfig(epochs=3).to_dict(), key: value}))
    with pytest.raises(ValueError, match=rf"config\.json: {re.escape(expected)}; restore the file the run wrote"):
        resume(tmp_path, epochs=4)


def test_resume_refuses_epochs_already_trained(base_run, tmp_path):
    """--epochs is the total: on main --resume RUN --epochs 2 on a 3-epoch run trained nothing and reported done."""
    out = shutil.copytree(base_run[0], tmp_path / "run", symlinks=True)
    config = (out / "config.json").read_text()
    with pytest.raises(ValueError, match=r"--epochs 2 is the total number of epochs, and .*run has trained 3 already: "
                                         r"nothing would be trained\. .*\(e\.g\. --epochs 5\)"):
        resume(out, epochs=2)
    assert (out / "config.json").read_text() == config


def test_metrics_time_continues_across_a_resume(tmp_path):
    """time_s is the run's wall time summed over its invocations; on main it restarted at each --resume (31.6 s at
    epoch 117, 17.5 s at 118), so a learning curve against time went back. Clocks: 100 s per reading, then 1 s."""
    slow, fast = itertools.count(0.0, 100.0), itertools.count(5e6, 1.0)
    out = tmp_path / "run"
    train(tiny_config(out, epochs=2), clock=lambda: next(slow))
    before = [float(r["time_s"]) for r in read_rows(out)]
    resume(out, epochs=3, clock=lambda: next(fast))
    times = [float(r["time_s"]) for r in read_rows(out)]
    assert times[:2] == before and before[1] < times[2] < before[1] + 1000


def test_resume_names_moved_data_and_the_fix(base_run, tmp_path):
    """On main a run whose data file was moved said only 'X does not exist', neither whose nor what to do."""
    out = shutil.copytree(base_run[0], tmp_path / "run", symlinks=True)
    config = json.loads((out / "config.json").read_text())
    config["data"] = [str(tmp_path / "moved.npz")]
    (out / "config.json").write_text(json.dumps(config))
    with pytest.raises(FileNotFoundError, match=r"moved\.npz, the data of .*run \(its config\.json 'data'\), does not "
                                                r"exist \(moved or deleted\?\): give its new path with --data"):
        resume(out, epochs=4)


def test_resume_follows_moved_data_with_the_same_content_only(base_run, tmp_path):
    """The fix the message names: --data NEW_PATH on a resume. It was refused ('cannot change --data') although
    the README told users to do it; now the file's content must equal the run's (SHA-256), its path may change."""
    out = shutil.copytree(base_run[0], tmp_path / "run", symlinks=True)
    config = json.loads((out / "config.json").read_text())
    config["data"] = [str(tmp_path / "gone.npz")]
    (out / "config.json").write_text(json.dumps(config))
    other = tmp_path / "other.npz"
    with np.load(DATA) as npz:
        arrays = dict(npz)
    arrays["E"] = arrays["E"] + 0.01
    np.savez(other, **arrays)
    with pytest.raises(ValueError, match=r"the data changed since the run started: .*other\.npz \(was "
                                         r".*train_ethanol64\.npz\) \(SHA-256 differs\)"):
        resume(out, epochs=4, data=[str(other)])
    assert json.loads((out / "config.json").read_text())["data"] == [str(tmp_path / "gone.npz")]
    moved = tmp_path / "moved.npz"
    moved.write_bytes(DATA.read_bytes())
    summary = resume(out, epochs=4, data=[str(moved)])
    assert summary["epochs_run"] == 4
    assert TrainConfig.load(out / "config.json").data == [str(moved)]
    assert [r["epoch"] for r in read_rows(out)] == ["1", "2", "3", "4"]


def test_resume_without_the_latest_link_names_the_newest_checkpoint(base_run, tmp_path):
    """On main a run whose 'latest' link was lost said 'nothing to resume' although its checkpoints were there."""
    out = shutil.copytree(base_run[0], tmp_path / "run", symlinks=True)
    newest = os.path.realpath(out / "latest")
    (out / "latest").unlink()
    relative = os.path.relpath(newest, out)
    with pytest.raises(FileNotFoundError, match=f"nothing to resume, no complete checkpoint at {out / 'latest'}; its "
                                                f"newest checkpoint is {newest}: restore the link with ln -sfn "
                                                f"{relative} {out / 'latest'}"):
        resume(out, epochs=4)


def test_resume_without_the_best_link_refuses_before_training(base_run, tmp_path):
    """On main a run whose 'best' link was lost trained all its epochs and then failed with only 'best does not
    exist'."""
    out = shutil.copytree(base_run[0], tmp_path / "run", symlinks=True)
    target = os.readlink(out / "best")
    (out / "best").unlink()
    with pytest.raises(FileNotFoundError, match=rf"the link {out / 'best'} to the run's best checkpoint \(epoch \d+\) "
                                                rf"is missing or broken: restore the link with ln -sfn {target} "):
        resume(out, epochs=4)
    assert len(read_rows(out)) == 3


def _edit_json(path, **changes):
    path.write_text(json.dumps({**json.loads(path.read_text()), **changes}))


def _alter_a_train_state_file(out):
    files = sorted((out / "latest" / "train_state").rglob("*"))
    state_file = next(p for p in files if p.is_file() and p.stat().st_size)
    content = bytearray(state_file.read_bytes())
    content[-1] ^= 0xFF
    state_file.write_bytes(bytes(content))


def _swap_two_split_frames(out):
    with np.load(out / "split.npz") as npz:
        split = dict(npz)
    split["train"][0], split["valid"][0] = split["valid"][0], split["train"][0]
    np.savez(out / "split.npz", **split)


def _keep_the_first_lines(path, count):
    path.write_text("".join(path.read_text().splitlines(keepends=True)[:count]))


def _changed_data(out):
    other = out.parent / "other.npz"
    other.write_bytes(DATA.read_bytes() + b"\0")
    return {"data": [str(other)]}


REFUSED_RESUMES = {  # case: (edit of a copy of the run, returning resume's overrides or None; the refusal's message)
    "config.json edited": (lambda out: _edit_json(out / "config.json", learning_rate=0.5),
                           r"config\.json does not hold the settings the run's checkpoint"),
    "model.json edited": (lambda out: _edit_json(out / "model.json", cutoff=4.0),
                          r"model\.json does not describe the model of the run's checkpoint"),
    "latest link lost": (lambda out: (out / "latest").unlink(), "nothing to resume, no complete checkpoint"),
    "checkpoint file altered": (_alter_a_train_state_file, r"is corrupted: file train_state/\S+ fails its SHA-256"),
    "best link lost": (lambda out: (out / "best").unlink(), "the run's best checkpoint .* is missing or broken"),
    "split.npz changed": (_swap_two_split_frames, r"split\.npz changed since the run started"),
    "data changed": (_changed_data, "the data changed since the run started"),
    "metrics.csv truncated": (lambda out: _keep_the_first_lines(out / "metrics.csv", 2),
                              r"metrics\.csv is truncated or edited"),
    "epochs already trained": (lambda out: {"epochs": 2}, "--epochs 2 is the total number of epochs"),
    "time budget added": (lambda out: {"max_time": 60.0}, "was not trained with a time budget"),
}


@pytest.mark.parametrize("case", REFUSED_RESUMES)
def test_a_refused_resume_is_refused_before_the_data_are_read(base_run, tmp_path, monkeypatch, case):
    """On main every refusal of a resume that needs neither the data nor the compiled steps (a run directory edited
    or damaged, an option the run cannot continue with) came only after the data were read, the neighbor lists
    built and the steps compiled: 20-40 s on the bundled data before the command line was found wrong."""
    out = shutil.copytree(base_run[0], tmp_path / "run", symlinks=True)
    edit, message = REFUSED_RESUMES[case]
    overrides = edit(out) or {}

    def read_data(*args, **kwargs):
        raise AssertionError("the data were read before the resume was refused")

    monkeypatch.setattr("physnetjax.train.loop.load_dataset_parts", read_data)
    with pytest.raises((ValueError, FileNotFoundError), match=message):
        resume(out, **{"epochs": 4, **overrides})


def test_kcal_per_mol_data_gives_the_same_model(base_run, tmp_path):
    out, _ = base_run
    with np.load(DATA) as npz:
        arrays = {k: npz[k] for k in npz.files}
    arrays["E"] = arrays["E"] / KCAL_PER_MOL_IN_EV
    arrays["F"] = arrays["F"] / KCAL_PER_MOL_IN_EV
    kcal = tmp_path / "ethanol_kcal.npz"
    np.savez(kcal, **arrays)
    train(tiny_config(tmp_path / "kcal", data=[str(kcal)], energy_unit="kcal/mol"))
    model_ev, params_ev = load_checkpoint(out / "best")
    model_kcal, params_kcal = load_checkpoint(tmp_path / "kcal" / "best")
    np.testing.assert_allclose(model_kcal.element_energies, model_ev.element_energies, rtol=1e-12)
    for a, b in zip(leaves(params_ev), leaves(params_kcal)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)


def test_missing_labels_are_masked_not_zero_filled(base_run, tmp_path):
    (tmp_path / "mask").mkdir()
    trainer = Trainer(tiny_config(tmp_path / "mask"), tmp_path / "mask", resuming=False)
    frames = trainer.split["train"][:8]
    no_forces = np.zeros(len(trainer.dataset), bool)
    no_forces[frames[0]] = True
    trainer.dataset = dataclasses.replace(trainer.dataset, has_F=~no_forces)
    params = trainer.state.params

    def loss_and_grads(dataset):
        trainer.dataset = dataset
        batch, labels, _ = next(trainer.batches(frames))
        return trainer.loss_and_grads(params, batch, labels)

    reference = loss_and_grads(trainer.dataset)
    garbage = trainer.dataset.F.copy()
    garbage[frames[0]] = 1e3
    masked = loss_and_grads(dataclasses.replace(trainer.dataset, F=garbage))
    assert float(masked[0]) == float(reference[0])
    for a, b in zip(leaves(reference[1]), leaves(masked[1])):
        np.testing.assert_array_equal(a, b)
    garbage[frames[1]] = 1e3
    changed = loss_and_grads(dataclasses.replace(trainer.dataset, F=garbage))
    assert float(changed[0]) > 10 * float(reference[0])


def test_force_check_failure_stops_training(tmp_path, caplog):
    with pytest.raises(ForceCheckError, match="float64 central finite differences"):
        train(tiny_config(tmp_path / "fc", epochs=1, force_check_threshold=1e-13))
    assert not (tmp_path / "fc" / "best").exists()
    # nothing to resume (no checkpoint): on main the same --out was refused ("already holds a run") for good
    with caplog.at_level("INFO", logger="physnetjax.train.loop"):
        summary = train(tiny_config(tmp_path / "fc", epochs=1))
    assert summary["epochs_run"] == 1 and "stopped before its first checkpoint; starting over" in caplog.text
    assert [r["epoch"] for r in read_rows(tmp_path / "fc")] == ["1"]


@pytest.mark.parametrize("extra", ["latest", "notes.txt", "checkpoints/epoch-0001"])
def test_a_run_directory_with_a_checkpoint_or_foreign_files_is_kept(tmp_path, extra):
    out = tmp_path / "run"
    out.mkdir()
    tiny_config(out).save(out / "config.json")
    (out / "metrics.csv").write_text("epoch\n")
    if extra.startswith("checkpoints"):
        (out / extra).mkdir(parents=True)  # a complete checkpoint no link points to yet
    else:
        (out / extra).write_text("x")
    before = sorted(p.relative_to(out) for p in out.rglob("*"))
    with pytest.raises(FileExistsError, match="already holds a run"):
        train(tiny_config(out))
    assert sorted(p.relative_to(out) for p in out.rglob("*")) == before


def test_a_config_json_of_something_else_is_not_called_a_run(tmp_path):
    out = tmp_path / "project"
    out.mkdir()
    (out / "config.json").write_text('{"editor.tabSize": 4}')
    with pytest.raises(FileExistsError, match=r"holds a config.json that is no training run's settings \(.*unknown "
                                              r"setting\(s\) \['editor.tabSize'\].*choose another --out"):
        train(tiny_config(out))
    assert sorted(p.name for p in out.iterdir()) == ["config.json"]


@pytest.mark.parametrize("name", ["metrics.csv", "split.npz", "best"])
def test_a_new_run_refuses_a_directory_holding_files_of_its_names_and_keeps_them(tmp_path, name):
    """``--out`` a folder of the user's (no run's config.json) holding a file of a name the run writes: refused
    before anything is written or removed. The run used to replace such files, and a setup that failed (here on a
    label that is NaN) deleted the split and metrics files it was about to write, the user's."""
    out = tmp_path / "project"
    out.mkdir()
    (out / "notes.txt").write_text("kept")
    if name == "best":
        (out / name).symlink_to("checkpoints/epoch-0007")  # a link to nothing yet
    else:
        (out / name).write_text("mine")
    data = dict(np.load(DATA))
    data["E"] = np.where(np.arange(len(data["E"])) == 3, np.nan, data["E"])
    bad = tmp_path / "bad.npz"
    np.savez(bad, **data)
    before = {p.name: os.readlink(p) if p.is_symlink() else p.read_text() for p in out.iterdir()}
    with pytest.raises(FileExistsError, match=rf"{out} holds {name} but no training run \(no config.json\): a new run "
                                              r"writes files of those names there and would replace them"):
        train(tiny_config(out, data=[str(bad)]))
    assert {p.name: os.readlink(p) if p.is_symlink() else p.read_text() for p in out.iterdir()} == before


TWO_DEVICES = r"""
import json, sys
import jax, numpy as np
from physnetjax.data import load_npz
from physnetjax.predict import init_params
from physnetjax.train.batching import batch_shapes, iterate_batches
from physnetjax.train.config import TrainConfig
from physnetjax.train.loop import build_model
from physnetjax.train.loss import loss_weights
from physnetjax.train.optim import make_optimizer, make_schedule, make_steps
from physnetjax.train.parallel import device_mesh, replicate, shard_batch

config = TrainConfig(features=8, num_basis_functions=8, n_res=1, batch_size=8)
data = load_npz(sys.argv[1])
model = build_model(config, 8)
params = jax.tree_util.tree_map(lambda p: p + 0.05 * np.random.default_rng(0).normal(size=p.shape).astype(p.dtype),
                                init_params(model, 0))
steps = make_steps(model, make_optimizer(config, make_schedule(config, 1)), loss_weights(config), "mse", 0.999)
loss_and_grads = steps[2]
energies = data.E - data.E.mean()
frames = np.arange(7)
results = {}
for devices in (1, 2):
    mesh = device_mesh(jax.local_devices()[:devices])
    shapes = batch_shapes(data, model, 8, devices)
    batch, labels = next(iterate_batches(data, frames, energies, model, 8, shapes))
    batch = shard_batch(batch, mesh)
    loss, grads = loss_and_grads(replicate(params, mesh), batch, shard_batch(labels, mesh))
    results[devices] = {"loss": float(loss), "grads": [np.asarray(g).ravel().tolist() for g in jax.tree_util.tree_leaves(grads)],
                        "shards": sorted({s.device.id for s in batch.positions.addressable_shards}),
                        "shard_shape": list(batch.positions.addressable_shards[0].data.shape)}
print(json.dumps({"count": jax.device_count(), "results": results}))
"""


@pytest.mark.slow
def test_two_host_devices_match_one_device():
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2", JAX_PLATFORMS="cpu")
    proc = subprocess.run([sys.executable, "-c", TWO_DEVICES, str(DATA)], env=env, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["count"] == 2
    one, two = out["results"]["1"], out["results"]["2"]
    assert two["shards"] == [0, 1] and two["shard_shape"][0] == 1 and one["shards"] == [0]
    assert abs(one["loss"] - two["loss"]) <= 1e-5 * abs(one["loss"])
    for a, b in zip(one["grads"], two["grads"]):
        np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-6 * max(1.0, float(np.max(np.abs(a)))))


@pytest.mark.slow
@pytest.mark.parametrize("members", [1, 2])
def test_sigkill_during_checkpoint_write_resumes_from_last_complete(tmp_path, members):
    out = tmp_path / "killed"
    args = [sys.executable, "-m", "physnetjax.train", "--data", str(DATA), "--out", str(out), "--epochs", "200",
            "--no-progress", "--no-plots", "--quiet", "--ensemble", str(members), "--checkpoint-interval-s", "0"]
    for key, value in TINY.items():
        if key != "progress":
            args += [f"--{key.replace('_', '-')}", str(value)]
    proc = subprocess.Popen(args, env=dict(os.environ, JAX_PLATFORMS="cpu"))
    checkpoints = out / "checkpoints"
    deadline = time.time() + 500
    killed_during_write = False
    while time.time() < deadline and proc.poll() is None:
        if (out / "latest").exists() and any(p.name.startswith(".") for p in checkpoints.iterdir()):
            proc.send_signal(signal.SIGKILL)
            killed_during_write = True
            break
        time.sleep(0.001)
    proc.wait()
    assert killed_during_write, "never caught a checkpoint write in progress"
    last_complete = int(os.readlink(out / "latest").split("-")[-1])
    summary = resume(out, epochs=last_complete + 1)
    assert summary["epochs_run"] == last_complete + 1
    assert ("ensemble" in summary) == (members > 1)
    assert [int(r["epoch"]) for r in read_rows(out)] == list(range(1, last_complete + 2))
    assert not any(p.name.startswith(".") for p in checkpoints.iterdir())


def test_sigterm_in_the_trainers_process_saves_the_run_like_ctrl_c(base_run, tmp_path, monkeypatch, capsys):
    """SIGTERM (what a batch scheduler sends at its time limit) ended the trainer like kill -9 on main: the epochs
    since the last checkpoint (up to --checkpoint-interval-s of training) lost, no line; Ctrl-C saved them and
    printed how to resume. The train command's main, run here, gets a real SIGTERM as its third epoch starts (the
    first two exist in memory only): it saves them, prints the resume hint and returns 143 (128 + 15). The compiled
    steps are those of ``base_run`` (the same settings); the test of a separate process that is resumed afterwards
    (below) is marked slow."""
    from physnetjax.train.cli import main as train_main

    out = tmp_path / "run"
    train_epoch = Trainer._train_epoch
    saved_before = []

    def terminated_at_the_third_epoch(self, *args):
        if self.epoch == 3:
            saved_before.append((out / "latest").exists())
            os.kill(os.getpid(), signal.SIGTERM)
        return train_epoch(self, *args)

    def unhandled(signum, frame):
        raise RuntimeError("the train command left SIGTERM to the handler it found")

    monkeypatch.setattr(Trainer, "_train_epoch", terminated_at_the_third_epoch)
    argv = ["--data", str(DATA), "--out", str(out), "--epochs", "500", "--no-progress", "--no-plots", "--quiet",
            "--checkpoint-interval-s", "3600"]
    for key, value in TINY.items():
        if key != "progress":
            argv += [f"--{key.replace('_', '-')}", str(value)]
    previous = signal.signal(signal.SIGTERM, unhandled)  # without main's handler SIGTERM would end pytest
    try:
        assert train_main(argv) == 143
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert capsys.readouterr().err.splitlines()[-1] == (
        f"python -m physnetjax.train: terminated (SIGTERM); continue from the last checkpoint with: python -m "
        f"physnetjax.train --resume {out}")
    assert saved_before == [False]  # no checkpoint in the first hour: the two epochs were in memory only
    assert os.readlink(out / "latest") == os.path.join("checkpoints", "epoch-0002")
    assert int(load_train_state(out / "latest")["step"]) == 2 * TINY["train"] // TINY["batch_size"]
    assert [int(r["epoch"]) for r in read_rows(out)] == [1, 2]


@pytest.mark.slow
def test_sigterm_saves_the_run_like_ctrl_c_and_it_resumes(tmp_path):
    """SIGTERM (what a batch scheduler sends at its time limit) ended the trainer like kill -9 on main: exit -15, no
    line, and the epochs since the last checkpoint (up to --checkpoint-interval-s of training) lost; Ctrl-C saved
    them and printed how to resume. SIGTERM is now handled as Ctrl-C, with exit status 143 (128 + 15). Here the
    command runs as a process of its own, resumed afterwards: 33-85 s, as a fresh process compiles (the default
    suite has the test above, of main in this process)."""
    out = tmp_path / "run"
    args = [sys.executable, "-m", "physnetjax.train", "--data", str(DATA), "--out", str(out), "--epochs", "500",
            "--no-progress", "--no-plots", "--quiet", "--checkpoint-interval-s", "3600"]
    for key, value in TINY.items():
        if key != "progress":
            args += [f"--{key.replace('_', '-')}", str(value)]
    proc = subprocess.Popen(args, env=dict(os.environ, JAX_PLATFORMS="cpu"), stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None and (
            not (out / "metrics.csv").exists() or len(read_rows(out)) < 2):
        time.sleep(0.05)
    assert not (out / "latest").exists()  # no checkpoint written in the first hour: the epochs exist in memory only
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err
    assert err.splitlines()[-1] == (f"python -m physnetjax.train: terminated (SIGTERM); continue from the last "
                                    f"checkpoint with: python -m physnetjax.train --resume {out}")
    saved = int(os.readlink(out / "latest").split("-")[-1])
    assert saved >= 2 and len(read_rows(out)) in (saved, saved + 1)  # the row of an epoch cut short before its save
    assert resume(out, epochs=saved + 1)["epochs_run"] == saved + 1
    assert [int(r["epoch"]) for r in read_rows(out)] == list(range(1, saved + 2))


def test_init_from_loads_weights_only(base_run, tmp_path):
    out, _ = base_run
    fine_tuned = tmp_path / "fine"
    train(tiny_config(fine_tuned, epochs=1, init_from=str(out / "best"), learning_rate=1e-4))
    first_base = float(read_rows(out)[0]["valid_loss"])
    best_base = min(float(r["valid_loss"]) for r in read_rows(out))
    first_fine = float(read_rows(fine_tuned)[0]["valid_loss"])
    assert first_fine < first_base
    assert abs(first_fine - best_base) < 0.2 * best_base
    state = load_train_state(fine_tuned / "latest")
    assert int(np.asarray(state["step"])) == 6


def test_checkpoints_record_their_training_frames_and_a_fine_tuned_run_names_the_initial_models_in_its_test(
        base_run, tmp_path):
    """The checkpoint records digests of its training and its validation split's frames (what eval and calibrate
    compare with), computed here from the raw arrays. A run fine-tuned from it on another split (seed 1) tested on frames the initial model had
    trained on, and reported those test errors as held out: it warns with the counts (from the two split files), and
    records the union of both training sets."""
    from physnetjax.data.frame_digests import VALIDATION_FRAMES_KEY, FrameRecord, frame_digests

    out, _ = base_run
    with np.load(DATA) as npz:
        Z, R, N = npz["Z"], npz["R"], npz["N"]
    with np.load(out / "split.npz") as split:
        base_train, base_valid = split["train"], split["valid"]
    _, _, meta = load_checkpoint(out / "best", with_metadata=True)
    recorded = FrameRecord.from_metadata(meta)
    assert recorded.complete and recorded.frames == 24
    np.testing.assert_array_equal(recorded.digests, np.sort(frame_digests(Z[base_train], R[base_train], N[base_train])))
    validated = FrameRecord.from_metadata(meta, VALIDATION_FRAMES_KEY)
    np.testing.assert_array_equal(validated.digests, np.sort(frame_digests(Z[base_valid], R[base_valid], N[base_valid])))

    fine_tuned = tmp_path / "fine"
    with pytest.warns(PhysNetInputWarning, match=r"--init-from .*best was trained on (\d+) of the 8 frames of the "
                                                 r"(validation|test) split") as caught:
        train(tiny_config(fine_tuned, epochs=1, init_from=str(out / "best"), seed=1))
    with np.load(fine_tuned / "split.npz") as split:
        shared = {name: np.intersect1d(split[key], base_train).size
                  for name, key in (("validation", "valid"), ("test", "test"))}
        own_train = split["train"]
    expected = " and ".join(f"{count} of the 8 frames of the {name} split" for name, count in shared.items() if count)
    assert expected and [str(w.message) for w in caught if "--init-from" in str(w.message)] == [
        f"--init-from {out / 'best'} was trained on {expected} of this run (same atoms and positions): its errors "
        "there are partly training errors, so the test errors reported at the end are optimistic; keep its training "
        "frames in this run's training split (--split-file), or test on other frames"]
    _, _, meta = load_checkpoint(fine_tuned / "best", with_metadata=True)
    assert FrameRecord.from_metadata(meta).frames == np.union1d(base_train, own_train).size
    resume(fine_tuned, epochs=2)  # the initial model's frames are kept from the checkpoint, not forgotten
    _, _, meta = load_checkpoint(fine_tuned / "latest", with_metadata=True)
    assert FrameRecord.from_metadata(meta).frames == np.union1d(base_train, own_train).size


def test_the_run_records_the_interatomic_distances_of_its_training_frames(base_run):
    """trained_distances: the shortest pair per element pair, longest nearest neighbour and most neighbours per element
    over the training frames alone (checked against a dense float64 distance matrix; the valid and test frames would change
    it), so that structures outside them warn."""
    out, _ = base_run
    _, _, meta = load_checkpoint(out / "best", with_metadata=True)
    with np.load(out / "split.npz") as split:
        train_frames, held_out = split["train"], np.concatenate([split["valid"], split["test"]])
    with np.load(DATA) as npz:
        z, r = npz["Z"], npz["R"].astype(np.float64)  # every frame one whole ethanol, 9 atoms

    def recorded(frames):
        d = np.linalg.norm(r[frames][:, :, None] - r[frames][:, None], axis=-1)
        d[:, np.arange(9), np.arange(9)] = np.inf
        pairs = {(a, b): d[(z[frames][:, :, None] == a) & (z[frames][:, None] == b)].min()
                 for a, b in ((1, 1), (1, 6), (1, 8), (6, 6), (6, 8))}
        nearest = {e: d.min(axis=2)[z[frames] == e].max() for e in (1, 6, 8)}
        most = {str(e): int((d < TINY["cutoff"]).sum(axis=2)[z[frames] == e].max()) for e in (1, 6, 8)}
        return pairs, nearest, most

    pairs, nearest, most = recorded(train_frames)
    stored = meta["trained_distances"]
    assert stored["cutoff"] == TINY["cutoff"] and sorted(stored["shortest"]) == ["1-1", "1-6", "1-8", "6-6", "6-8"]
    for (a, b), d in pairs.items():
        assert stored["shortest"][f"{a}-{b}"] == pytest.approx(d, rel=1e-12)
    assert stored["longest_nearest_neighbour"] == pytest.approx({str(e): d for e, d in nearest.items()}, rel=1e-12)
    assert stored["most_neighbours"] == most
    everything = recorded(np.concatenate([train_frames, held_out]))
    assert everything != (pairs, nearest, most)


def test_resume_refuses_changed_data_and_records_trained_elements_and_charges(tmp_path, caplog):
    """On main --resume only compared the data *path*: a file changed in place was trained on silently."""
    data = tmp_path / "data.npz"
    data.write_bytes(DATA.read_bytes())
    out = tmp_path / "run"
    train(tiny_config(out, data=[str(data)], epochs=1))
    _, _, meta = load_checkpoint(out / "latest", with_metadata=True)
    assert meta["trained_elements"] == [1, 6, 8] and meta["trained_charges"] == [0.0]
    assert meta["trained_charge_states"] is None  # one charge state: the charges record says it all
    with np.load(data) as npz:
        arrays = dict(npz)
    arrays["E"] = arrays["E"] + 0.01
    np.savez(data, **arrays)
    with pytest.raises(ValueError, match=r"the data changed since the run started: .*data\.npz .*--allow-changed-data"):
        resume(out, epochs=2)
    assert TrainConfig.load(out / "config.json").epochs == 1  # the refused resume saved nothing
    with caplog.at_level("WARNING", logger="physnetjax.train.loop"):
        summary = resume(out, epochs=2, allow_changed_data=True)
    assert summary["epochs_run"] == 2 and "the data changed" in caplog.text


def test_resume_refuses_a_changed_split(tmp_path):
    """split.npz decides which frames train, validate and test: one replaced mid-run was used silently."""
    out = tmp_path / "run"
    train(tiny_config(out, epochs=1))
    original = (out / "split.npz").read_bytes()
    with np.load(out / "split.npz") as npz:
        split = dict(npz)
    split["train"][0], split["valid"][0] = split["valid"][0], split["train"][0]
    np.savez(out / "split.npz", **split)
    with pytest.raises(ValueError, match=r"split\.npz changed since the run started .*Restore the run's split\.npz"):
        resume(out, epochs=2)
    (out / "split.npz").write_bytes(original)
    assert resume(out, epochs=2)["epochs_run"] == 2


def test_a_split_file_leaving_frames_out_warns(tmp_path):
    """A split file made for a 40-frame subset of these 64 frames: on main 24 frames were dropped without a word."""
    np.savez(tmp_path / "split.npz", train=np.arange(0, 24), valid=np.arange(24, 32), test=np.arange(32, 40))
    with pytest.warns(PhysNetInputWarning, match=r"--split-file .*split\.npz: 24 of the 64 frames are in none of "
                                                 r"train, valid and test and are not used \(first: .*\[40\]"):
        train(tiny_config(tmp_path / "run", epochs=1, train=None, valid=0.1, test=0.1,
                          split_file=str(tmp_path / "split.npz")))
    with warnings.catch_warnings():
        warnings.simplefilter("error", PhysNetInputWarning)
        np.savez(tmp_path / "all.npz", train=np.arange(0, 48), valid=np.arange(48, 56), test=np.arange(56, 64))
        train(tiny_config(tmp_path / "all", epochs=1, train=None, split_file=str(tmp_path / "all.npz")))


def test_nan_metrics_raise_naming_the_split(base_run, tmp_path):
    """On main a NaN on the test split was printed as `test energy MAE nan` and the run exited 0."""
    run_dir = tmp_path / "nan"
    run_dir.mkdir()
    trainer = Trainer(tiny_config(run_dir), run_dir, resuming=False)
    broken = jax.tree_util.tree_map(lambda p: p * np.nan, trainer.state.ema_params)
    with pytest.raises(FloatingPointError, match=r"the test loss is nan .* on 8 test frames"):
        trainer.evaluate(broken, trainer.split["test"], split="test")


def test_frames_of_several_charges_without_a_charge_model_warn(tmp_path):
    """A model without charges gives one energy per geometry whatever its total charge: mixing charge states warns."""
    from physnetjax.errors import PhysNetInputWarning

    with np.load(DATA) as npz:
        arrays = dict(npz)
    arrays["Q"] = np.where(np.arange(len(arrays["R"])) % 2 == 0, 0.0, 1.0)
    np.savez(tmp_path / "mixed.npz", **arrays)
    for name in ("run", "run2", "run3"):
        (tmp_path / name).mkdir()
    with pytest.warns(PhysNetInputWarning, match=r"the training frames have total charges 0, 1 e, but a model without "
                                                 r"--charges does not see the total charge"):
        Trainer(tiny_config(tmp_path / "run", data=[str(tmp_path / "mixed.npz")]), tmp_path / "run", resuming=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error", PhysNetInputWarning)
        trainer = Trainer(tiny_config(tmp_path / "run2", data=[str(tmp_path / "mixed.npz")], charges=True),
                          tmp_path / "run2", resuming=False)
    assert trainer.trained_charges == [0.0, 1.0]  # recorded in the checkpoints' metadata
    assert trainer.trained_charge_states == {"C2H6O": [0.0, 1.0]}  # and so is each composition's
    with warnings.catch_warnings():
        warnings.simplefilter("error", PhysNetInputWarning)
        single = Trainer(tiny_config(tmp_path / "run3"), tmp_path / "run3", resuming=False)  # one charge state
    assert single.trained_charge_states is None


@pytest.mark.parametrize("edit", [{"cutoff": 4.0}, {"features": 16}, {"cutoff": "5"}])
def test_resume_refuses_an_edited_model_json(base_run, tmp_path, edit):
    """On main an edited cutoff in model.json resumed silently in another model (other numbers), a changed width
    failed as a train-state shape mismatch, and a string cutoff was an internal TypeError."""
    out = shutil.copytree(base_run[0], tmp_path / "run", symlinks=True)
    model = json.loads((out / "model.json").read_text())
    (out / "model.json").write_text(json.dumps({**model, **edit}))
    name, value = next(iter(edit.items()))
    with pytest.raises(PhysNetInputError, match=rf"model\.json does not describe the model of the run's checkpoint "
                                                rf".*epoch-0003: {name} = {re.escape(json.dumps(value))} \(the "
                                                rf"checkpoint's: {re.escape(json.dumps(model[name]))}\); the file "
                                                "was edited after the run started"):
        resume(out, epochs=4)


@pytest.mark.parametrize("edit", ["drop", "rename", "add", "repeat"])
def test_resume_refuses_a_metrics_csv_with_other_columns(base_run, tmp_path, edit):
    """On main a metrics.csv that had lost a column (or had one renamed) was rewritten on resume without it, with
    metrics.jsonl likewise: the column's values of every trained epoch were gone without a word."""
    out = shutil.copytree(base_run[0], tmp_path / "run", symlinks=True)
    history = (out / "metrics.jsonl").read_text()
    rows = read_rows(out)
    columns = list(rows[0])
    if edit == "drop":
        columns.remove("grad_norm")
    elif edit == "rename":
        columns[columns.index("valid_forces_mae")] = "forces_mae"
        for row in rows:
            row["forces_mae"] = row.pop("valid_forces_mae")
    elif edit == "add":
        columns.append("note")
    else:
        columns.append("grad_norm")
    with open(out / "metrics.csv", "w", newline="") as handle:
        csv.DictWriter(handle, columns, extrasaction="ignore").writerows([dict(zip(columns, columns)), *rows])
    csv_text = (out / "metrics.csv").read_text()
    expected = {"drop": r"missing: grad_norm\)", "rename": r"missing: valid_forces_mae; unknown: forces_mae\)",
                "add": r"unknown: note\)", "repeat": r"given twice: grad_norm\)"}[edit]
    with pytest.raises(ValueError, match=r"metrics\.csv holds other columns than this run writes \(" + expected):
        resume(out, epochs=4)
    assert (out / "metrics.csv").read_text() == csv_text
    assert (out / "metrics.jsonl").read_text() == history


def test_resume_refuses_a_metrics_csv_row_cut_short(base_run, tmp_path):
    """On main a row that had lost its last values was read back with them empty and rewritten so on resume."""
    out = shutil.copytree(base_run[0], tmp_path / "run", symlinks=True)
    lines = (out / "metrics.csv").read_text().splitlines()
    columns = len(lines[0].split(","))
    lines[2] = ",".join(lines[2].split(",")[:-2])
    (out / "metrics.csv").write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match=rf"metrics\.csv line 3 holds {columns - 2} values for {columns} columns: "
                                         r"it was cut short or edited"):
        resume(out, epochs=4)


def test_a_run_directory_in_use_by_another_training_process_is_refused(tmp_path):
    """Two trainings with one --out both reported success: the second removed the first one's files (its run looked
    unstarted before its first checkpoint) and trained there, interleaving metrics.csv. A lock of a live process
    refuses the second; one left by a killed process (its pid gone) is taken over and removed at the end."""
    import socket

    from physnetjax.train.run_lock import LOCK_NAME, RunLockedError

    out = tmp_path / "run"
    out.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (out / LOCK_NAME).write_text(f"{socket.gethostname()} {holder.pid}")
        with pytest.raises(RunLockedError, match=rf"{out} is in use by another training process \(pid {holder.pid}\)"):
            train(tiny_config(out, epochs=1))
        assert sorted(p.name for p in out.iterdir()) == [LOCK_NAME]  # nothing of the refused run written
    finally:
        holder.kill()
        holder.wait()
    train(tiny_config(out, epochs=1))  # the holder is gone: its lock is taken over
    assert not (out / LOCK_NAME).exists() and (out / "best").exists()
    (out / LOCK_NAME).write_text("elsewhere 123")
    with pytest.raises(RunLockedError, match=r"in use by a training process on host elsewhere \(pid 123"):
        resume(out, epochs=2)


def bent_waters(path, frames: int = 48, seed: int = 0) -> None:
    """Water frames (random bonds, angles, orientations) whose dipole follows the geometry: q_H = 0.35 + 1.5 (r_OH −
    0.96 Å) e per hydrogen, q_O = −q_H1 − q_H2, μ = Σ q r; harmonic energies (eV) and their forces (−∇E by jax.grad,
    float64). A charge model must learn the charges' dependence on the bonds to give these dipole changes."""
    import jax.numpy as jnp
    from scipy.spatial.transform import Rotation

    rng = np.random.default_rng(seed)

    def energy(r):
        d1, d2 = r[1] - r[0], r[2] - r[0]
        b1, b2 = jnp.linalg.norm(d1), jnp.linalg.norm(d2)
        angle = jnp.arccos(d1 @ d2 / (b1 * b2))
        return 25.0 * ((b1 - 0.96) ** 2 + (b2 - 0.96) ** 2) + 2.0 * (angle - np.radians(104.5)) ** 2

    positions, energies, forces, dipoles = [], [], [], []
    for _ in range(frames):
        b1, b2 = 0.96 + rng.normal(scale=0.04, size=2)
        half = np.radians(104.5 + rng.normal(scale=4.0)) / 2.0
        body = np.array([[0.0, 0.0, 0.0], [b1 * np.sin(half), b1 * np.cos(half), 0.0],
                         [-b2 * np.sin(half), b2 * np.cos(half), 0.0]])
        r = body @ Rotation.random(random_state=rng).as_matrix().T + rng.normal(size=3)
        q_h = 0.35 + 1.5 * (np.array([b1, b2]) - 0.96)
        positions.append(r)
        energies.append(float(energy(jnp.asarray(r))))
        forces.append(-np.asarray(jax.grad(energy)(jnp.asarray(r))))
        dipoles.append(np.array([-q_h.sum(), *q_h]) @ r)
    np.savez(path, R=np.array(positions), Z=np.array([8, 1, 1]), E=np.array(energies), F=np.array(forces),
             D=np.array(dipoles), Q=np.zeros(frames))


def test_a_dipole_that_does_not_follow_the_geometry_is_reported_recorded_and_warned_about(tmp_path):
    """The dipole MAE hid a model whose dipoles miss all the geometry dependence IR intensities come from. A
    one-epoch model on waters whose charges follow the bond lengths: the molecular-frame dipole R² is in the
    final report and metrics.json beside the MAE, equals the R² of the best checkpoint's own dipoles (predict, one
    frame at a time) on the test frames, is recorded in the checkpoint, and is low, which warns with remedies."""
    from physnetjax.dipole_surface import DIPOLE_SURFACE_KEY, IR_R2_THRESHOLD, dipole_surface_fit
    from physnetjax.data import load_dataset, load_split

    data = tmp_path / "waters.npz"
    bent_waters(data)
    out = tmp_path / "run"
    config = tiny_config(out, data=[str(data)], charges=True, train=32, epochs=1, learning_rate=1e-3,
                         dipole_weight=25.0)
    with pytest.warns(PhysNetInputWarning, match=r"dipole R² in the molecular frame -?[0-9.]+ on the test split "
                                                 r".*IR intensities.*unreliable.*; raise --dipole-weight beyond this "
                                                 r"run's 25, add"):
        summary = train(config)
    model, params, meta = load_checkpoint(out / "best", with_metadata=True)
    dataset, test = load_dataset([str(data)]), load_split(out / "split.npz", 48)["test"]
    predicted = np.array([predict(model, params, dataset.Z[k], dataset.R[k])["dipole"] for k in test])
    expected = dipole_surface_fit(dataset.Z[test], dataset.R[test], dataset.N[test], dataset.D[test], predicted)
    recorded = meta[DIPOLE_SURFACE_KEY]
    assert recorded["test"]["frames"] == 8 and recorded["valid"]["frames"] == 8
    assert recorded["test"]["r2"] == pytest.approx(expected.r2, rel=1e-4)
    assert recorded["test"]["spread_rms"] == pytest.approx(expected.spread_rms, rel=1e-9)
    assert summary["test"]["dipole_r2"] == recorded["test"]["r2"] < IR_R2_THRESHOLD
    assert summary["valid"]["dipole_r2"] == recorded["valid"]["r2"]
    final = json.loads((out / "metrics.json").read_text())["final"]
    assert final["test"]["dipole_r2"] == recorded["test"]["r2"] and "dipole_mae" in final["test"]


def test_epoch_lines_resolve_an_mae_below_a_tenth_of_a_millielectronvolt():
    """A formaldehyde model's energy MAE of 8.9e-5 eV was printed "E MAE 0.0001 eV" (and 4e-5 as 0.0000): below 1e-3
    an MAE keeps three significant digits; the usual sizes keep their four decimals (README's lines unchanged). A
    time budget's estimated epoch count is marked as one (it read 1/526, 2/178, 3/376)."""
    from physnetjax.train.loop import _summary_line

    row = {"epoch": 3, "lr": 1e-3, "train_loss": 1.0, "valid_loss": 1.0, "valid_energy_mae": 8.9e-5,
           "valid_forces_mae": 0.0335, "valid_dipole_mae": 4.2e-5, "time_s": 1.0}
    line = _summary_line(row, 10)
    assert "E MAE 8.90e-05 eV" in line and "F MAE 0.0335 eV/Å" in line and "D MAE 4.20e-05 eÅ" in line
    assert line.startswith("epoch    3/10 ") and _summary_line(row, 376, estimated=True).startswith("epoch    3/~376 ")


def check_plateau_rates(rows, kept, base_lr=0.05, factor=0.5):
    """The plateau rule (patience 0) replayed on the logged validation losses of metrics.csv ``rows``: each logged
    learning rate is ``base_lr`` times ``factor`` per earlier epoch whose validation loss did not beat the best
    before it, with at least one reduction. The steps use that rate: ``kept``, the rows of the same run with factor
    1, log ``base_lr`` throughout and equal ``rows`` up to the first reduction, and differ from it on."""
    scale, best, reductions = 1.0, math.inf, 0
    for row in rows:
        assert float(row["lr"]) == pytest.approx(base_lr * scale, rel=1e-12)
        loss = float(row["valid_loss"])
        if loss < best:
            best = loss
        else:
            scale, reductions = factor * scale, reductions + 1
    assert 0 < reductions and len(kept) == len(rows)
    first = next(k for k, row in enumerate(rows) if float(row["lr"]) < base_lr)
    assert [r["valid_loss"] for r in kept[:first]] == [r["valid_loss"] for r in rows[:first]]
    assert kept[first]["valid_loss"] != rows[first]["valid_loss"]
    assert {float(r["lr"]) for r in kept} == {base_lr}


def test_plateau_schedule_halves_the_learning_rate_after_each_epoch_without_improvement(tmp_path):
    """--schedule plateau with patience 0 and factor 0.5: the logged rates follow the rule replayed on the logged
    losses (:func:`check_plateau_rates`; a rate of 0.05 makes some epochs worse, so the rule acts), and the same run
    with factor 1 trains other parameters from the first reduction on."""
    settings = dict(schedule="plateau", plateau_patience=0, learning_rate=0.05, epochs=6, decay_rate=0.1,
                    decay_epochs=100.0)  # the defaults, not TINY's exponential decay
    train(tiny_config(tmp_path / "halved", plateau_factor=0.5, **settings))
    train(tiny_config(tmp_path / "kept", plateau_factor=1.0, **settings))
    check_plateau_rates(read_rows(tmp_path / "halved"), read_rows(tmp_path / "kept"))
