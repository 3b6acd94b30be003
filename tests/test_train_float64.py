"""Training in float64 (``--float64``): parameters, batches, gradients, optimizer state and EMA are float64, the
loss's gradient agrees with float64 finite differences, resume is exact, ``--init-from`` casts the starting weights,
and a float64 run is refused while JAX's 64-bit mode is off."""

import json
import os
import shutil
import subprocess
import sys

import jax
import numpy as np
import pytest

from physnetjax.checkpoint import load_checkpoint, load_train_state
from physnetjax.errors import PhysNetInputError
from physnetjax.train import Trainer, resume, train
from physnetjax.train.cli import run_float64

from test_train import DATA, TINY, leaves, read_rows, tiny_config


@pytest.fixture(scope="module")
def float64_run(tmp_path_factory):
    """A float64 run of 2 epochs (the suite runs with x64 on, as the command line sets it for --float64)."""
    out = tmp_path_factory.mktemp("float64") / "run"
    return out, train(tiny_config(out, epochs=2, float64=True))


def dtypes(tree) -> set:
    return {np.asarray(leaf).dtype.name for leaf in jax.tree_util.tree_leaves(tree)}


def test_a_float64_run_saves_float64_weights_optimizer_state_and_ema(float64_run):
    out, summary = float64_run
    assert json.loads((out / "model.json").read_text())["param_dtype"] == "float64"
    assert json.loads((out / "config.json").read_text())["float64"] is True
    model, params = load_checkpoint(out / "best")
    assert model.param_dtype == np.float64 and dtypes(params) == {"float64"}
    state = load_train_state(out / "latest")
    assert dtypes(state["params"]) == dtypes(state["ema_params"]) == {"float64"}
    float_leaves = {name for name in dtypes(state["opt_state"]) if name.startswith("float")}
    assert float_leaves == {"float64"}
    assert run_float64(out) is True
    assert run_float64(out / "missing") is False
    assert np.isfinite(summary["test"]["energy_mae"])


def test_float64_batches_and_a_loss_gradient_that_matches_float64_finite_differences(tmp_path):
    """The trainer's host and device batches are float64, and the directional derivative of its compiled loss
    agrees with a central difference to 1e-7 (a float32 loss, or float32 parameters, would miss by far more: its
    rounding, ~1e-7 of the loss, divided by the step 1e-5 is ~1e-2 of the derivative)."""
    trainer = Trainer(tiny_config(tmp_path, float64=True), tmp_path, resuming=False)
    assert trainer.device_frames is not None and trainer.device_frames.positions.dtype == np.float64
    batch, labels, _ = next(trainer.batches(trainer.split["train"]))
    assert batch.positions.dtype == labels["F"].dtype == labels["E"].dtype == np.float64
    params = trainer.initial_params
    direction = jax.tree_util.tree_map(
        lambda x: np.random.default_rng(x.size).standard_normal(x.shape), params)
    loss, grads = trainer.loss_and_grads(params, batch, labels)
    assert loss.dtype == np.float64 and dtypes(grads) == {"float64"}
    along = sum(float(np.vdot(g, d)) for g, d in zip(leaves(grads), leaves(direction)))

    def loss_at(step):
        moved = jax.tree_util.tree_map(lambda p, d: p + step * d, params, direction)
        return float(trainer.loss_and_grads(moved, batch, labels)[0])

    h = 1e-5
    central = (loss_at(h) - loss_at(-h)) / (2 * h)
    assert abs(central - along) <= 1e-7 * abs(along)


def test_a_float64_resume_equals_the_uninterrupted_run(float64_run, tmp_path):
    out, _ = float64_run
    interrupted = tmp_path / "interrupted"
    train(tiny_config(interrupted, epochs=1, float64=True))
    resume(interrupted, epochs=2)
    expected, resumed = load_train_state(out / "latest"), load_train_state(interrupted / "latest")
    assert dtypes(resumed) == dtypes(expected)
    for a, b in zip(leaves(expected), leaves(resumed)):
        np.testing.assert_allclose(b, a, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose([float(r["valid_loss"]) for r in read_rows(interrupted)],
                               [float(r["valid_loss"]) for r in read_rows(out)], rtol=1e-12)


def test_init_from_casts_the_starting_weights_to_the_runs_precision(float64_run, tmp_path):
    out, _ = float64_run
    _, start = load_checkpoint(out / "best")
    single = tmp_path / "single"
    train(tiny_config(single, epochs=1, init_from=str(out / "best"), learning_rate=1e-12, ema_decay=0.0))
    model, params = load_checkpoint(single / "best")
    assert json.loads((single / "model.json").read_text())["param_dtype"] == "float32"
    assert dtypes(params) == {"float32"}
    for a, b in zip(leaves(start), leaves(params)):  # a learning rate of 1e-12 leaves the weights where they start
        np.testing.assert_allclose(b, a.astype(np.float32), rtol=1e-6, atol=1e-9)
    double = tmp_path / "double"
    train(tiny_config(double, epochs=1, init_from=str(single / "best"), float64=True))
    assert dtypes(load_checkpoint(double / "best")[1]) == {"float64"}
    assert json.loads((double / "model.json").read_text())["param_dtype"] == "float64"


def test_float64_is_refused_while_x64_is_off(float64_run, tmp_path):
    out, _ = float64_run
    copy = shutil.copytree(out, tmp_path / "run", symlinks=True)
    before = (copy / "config.json").read_text()
    with jax.enable_x64(False):
        with pytest.raises(PhysNetInputError, match=r"float64 training needs JAX's 64-bit mode"):
            train(tiny_config(tmp_path / "new", float64=True))
        with pytest.raises(PhysNetInputError, match=r"float64 training needs JAX's 64-bit mode"):
            resume(copy, epochs=3)
    assert not (tmp_path / "new").exists()
    assert (copy / "config.json").read_text() == before


def test_resume_refuses_a_config_json_edited_to_float32(float64_run, tmp_path):
    copy = shutil.copytree(float64_run[0], tmp_path / "run", symlinks=True)
    config = json.loads((copy / "config.json").read_text())
    config["float64"] = False
    (copy / "config.json").write_text(json.dumps(config))
    with pytest.raises(PhysNetInputError, match=r"float64 = false \(the checkpoint's: true\)"):
        resume(copy, epochs=3)
    with pytest.raises(ValueError, match=r"cannot change float64"):
        resume(float64_run[0], float64=False)


COMMAND_LINE_RUNS = """
import sys

import jax

from physnetjax.train.cli import main

out, options = sys.argv[1], sys.argv[2:]
assert not jax.config.jax_enable_x64
assert main(["--out", out, "--epochs", "1", "--float64", *options]) == 0
assert jax.config.jax_enable_x64
jax.config.update("jax_enable_x64", False)
assert main(["--resume", out, "--epochs", "2", "--quiet"]) == 0
assert jax.config.jax_enable_x64
"""


def test_the_command_line_switches_x64_on_for_a_float64_run_and_its_resume(tmp_path):
    """Outside the suite JAX starts with x64 off: --float64, and --resume of a float64 run, switch it on (without it
    the run is refused, test_float64_is_refused_while_x64_is_off)."""
    options = ["--data", str(DATA), "--no-progress", "--no-plots", "--quiet"]
    for key, value in TINY.items():
        if key != "progress":
            options += [f"--{key.replace('_', '-')}", str(value)]
    env = {key: value for key, value in os.environ.items() if key != "JAX_ENABLE_X64"}
    proc = subprocess.run([sys.executable, "-c", COMMAND_LINE_RUNS, str(tmp_path / "run"), *options],
                          env={**env, "JAX_PLATFORMS": "cpu"}, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert [r["epoch"] for r in read_rows(tmp_path / "run")] == ["1", "2"]
    assert dtypes(load_checkpoint(tmp_path / "run" / "best")[1]) == {"float64"}
