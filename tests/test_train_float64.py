"""Training in float64 (``--float64``): parameters, batches, gradients, optimizer state and EMA are float64, the
loss's gradient agrees with float64 finite differences, resume is exact, ``--init-from`` casts the starting weights,
and a float64 run is refused while JAX's 64-bit mode is off."""

import json
import os
import shutil
import subprocess
import sys

import ase
import ase.io
import jax
import numpy as np
import pytest

from physnetjax.checkpoint import CheckpointError, load_checkpoint, load_train_state, save_checkpoint
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
import os
import shutil
import sys

import jax

from physnetjax.ensemble.__main__ import main as ensemble_main
from physnetjax.eval.cli import main as eval_main
from physnetjax.train.cli import main

out, data, options = sys.argv[1], sys.argv[2], sys.argv[3:]
assert not jax.config.jax_enable_x64
assert main(["--out", out, "--epochs", "1", "--float64", "--data", data, *options]) == 0
assert jax.config.jax_enable_x64
shutil.copytree(os.path.realpath(out + "/best"), out + "-epoch1")
jax.config.update("jax_enable_x64", False)
assert main(["--resume", out, "--epochs", "2", "--quiet"]) == 0
assert jax.config.jax_enable_x64

evaluate = ["--checkpoint", out + "/best", "--data", data, "--no-plots"]
jax.config.update("jax_enable_x64", False)
assert eval_main([*evaluate, "--float32"]) == 0
assert not jax.config.jax_enable_x64
assert eval_main(evaluate) == 0
assert jax.config.jax_enable_x64
jax.config.update("jax_enable_x64", False)
assert ensemble_main(["combine", out + "-epoch1", out + "/best", "--out", out + "-ensemble"]) == 0
assert jax.config.jax_enable_x64
"""


def test_the_command_line_switches_x64_on_for_a_float64_run_and_its_resume(tmp_path):
    """Outside the suite JAX starts with x64 off: --float64, and --resume of a float64 run, switch it on (without it
    the run is refused, test_float64_is_refused_while_x64_is_off); so do eval of a float64 checkpoint (not with
    --float32) and ensemble combine of float64 members, whose combined ensemble keeps their float64 weights."""
    options = ["--no-progress", "--no-plots", "--quiet"]
    for key, value in TINY.items():
        if key != "progress":
            options += [f"--{key.replace('_', '-')}", str(value)]
    env = {key: value for key, value in os.environ.items() if key != "JAX_ENABLE_X64"}
    proc = subprocess.run([sys.executable, "-c", COMMAND_LINE_RUNS, str(tmp_path / "run"), str(DATA), *options],
                          env={**env, "JAX_PLATFORMS": "cpu"}, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert [r["epoch"] for r in read_rows(tmp_path / "run")] == ["1", "2"]
    _, last = load_checkpoint(tmp_path / "run" / "best")
    _, first = load_checkpoint(tmp_path / "run-epoch1")
    model, combined = load_checkpoint(tmp_path / "run-ensemble")
    assert model.size == 2 and dtypes(last) == dtypes(combined) == {"float64"}
    for a, b, joined in zip(leaves(first), leaves(last), leaves(combined)):
        np.testing.assert_array_equal(joined, np.stack([a, b]))


def test_stored_precision_reads_the_checkpoints_weights(float64_run, tmp_path):
    from physnetjax.checkpoint.format import stored_precision
    from physnetjax.ensemble import PhysNetEnsemble

    out, _ = float64_run
    model, params = load_checkpoint(out / "best")
    assert stored_precision(out / "best") == "float64"
    assert stored_precision(tmp_path / "missing") == "float32"
    single32 = save_checkpoint(tmp_path / "single32", model.clone(param_dtype=np.float32),
                               jax.tree_util.tree_map(lambda x: np.asarray(x, np.float32), params))
    assert stored_precision(single32) == "float32"
    stacked = jax.tree_util.tree_map(lambda x: np.stack([x, 2 * x]), params)
    ensemble = save_checkpoint(tmp_path / "ensemble64", PhysNetEnsemble(member=model, size=2), stacked)
    assert stored_precision(ensemble) == "float64"


def test_float64_weights_load_unrounded_while_x64_is_off(float64_run):
    """Loaded with x64 off, a float64 checkpoint's weights stay NumPy float64 (a JAX array would round them to
    float32 there), so float64 analyses, which switch x64 on for their own work, see the trained weights."""
    out, _ = float64_run
    _, with_x64 = load_checkpoint(out / "best")
    with jax.enable_x64(False):
        _, without = load_checkpoint(out / "best")
    assert dtypes(without) == {"float64"}
    for a, b in zip(leaves(with_x64), leaves(without)):
        np.testing.assert_array_equal(b, a)
    assert any(not np.array_equal(a, a.astype(np.float32)) for a in leaves(without))  # rounding would show


def test_save_refuses_float64_model_with_rounded_weights(float64_run, tmp_path):
    out, _ = float64_run
    model, params = load_checkpoint(out / "best")
    rounded = jax.tree_util.tree_map(lambda x: np.asarray(x, np.float32), params)
    with pytest.raises(CheckpointError, match=r"the model's parameters are float64 .* but the arrays are float32: "
                                              r"the weights were rounded"):
        save_checkpoint(tmp_path / "rounded", model, rounded)
    assert not (tmp_path / "rounded").exists()


@pytest.mark.filterwarnings("ignore:.*frames of --data are:physnetjax.errors.PhysNetInputWarning")
def test_eval_runs_a_float64_checkpoint_in_float64_unless_told_float32(float64_run, tmp_path, capsys):
    from physnetjax.eval.cli import main as eval_main

    out, _ = float64_run
    common = ["--checkpoint", str(out / "best"), "--data", str(DATA), "--no-plots"]
    assert eval_main([*common, "--out", str(tmp_path / "default")]) == 0
    assert json.loads((tmp_path / "default" / "summary.json").read_text())["dtype"] == "float64"
    assert eval_main([*common, "--out", str(tmp_path / "rounded"), "--float32"]) == 0
    assert json.loads((tmp_path / "rounded" / "summary.json").read_text())["dtype"] == "float32"
    assert "evaluated in float32" in capsys.readouterr().out
    assert eval_main([*common, "--float32", "--float64"]) == 2
    assert "--float64 and --float32 are both set" in capsys.readouterr().err


def test_md_runs_a_float64_checkpoint_in_float64_unless_told_float32(float64_run, tmp_path):
    from physnetjax.md.__main__ import main as md_main

    out, _ = float64_run
    with np.load(DATA) as npz:
        ase.io.write(tmp_path / "start.xyz", ase.Atoms(numbers=npz["Z"][0], positions=npz["R"][0]))
    common = ["--checkpoint", str(out / "best"), "--geometry", str(tmp_path / "start.xyz"), "--steps", "4",
              "--save-every", "2", "--chunk", "1"]
    for option, precision in (([], "float64"), (["--float32"], "float32")):
        state = tmp_path / f"state-{precision}.npz"
        assert md_main([*common, "--md-checkpoint", str(state), *option]) == 0
        with np.load(state) as saved:
            assert saved["momenta"].dtype == precision


def test_the_python_api_runs_a_float64_model_in_float64_by_default_and_says_when_x64_is_off(float64_run, tmp_path):
    """The calculator, predict, predict_dataset and simulate ran every model in float32 unless given a dtype, also
    one trained with --float64 (whose commands run it in float64): its precision was lost without a word. They now
    follow the model's precision; while JAX's 64-bit mode is off a float64 model runs in float32 with a warning at
    the caller's line, and an explicit dtype is obeyed silently. A float32 model stays float32."""
    from physnetjax import PhysNetCalculator, predict
    from physnetjax.data import load_dataset
    from physnetjax.eval.predictions import predict_dataset
    from physnetjax.md.driver import simulate
    from physnetjax.validation import PhysNetInputWarning

    from conftest import warnings_as_errors

    out, _ = float64_run
    model, params = load_checkpoint(out / "best")
    with np.load(DATA) as npz:
        z, r = npz["Z"][0], npz["R"][0]
    atoms = ase.Atoms(numbers=z, positions=r)
    with warnings_as_errors():
        calc = PhysNetCalculator(model, params)
        assert calc.dtype == np.float64 and dtypes(calc.params) == {"float64"}
        assert PhysNetCalculator(model, params, dtype="float32").dtype == np.float32
        assert PhysNetCalculator(model.clone(param_dtype=np.float32), params).dtype == np.float32
        r32 = r.astype(np.float32)  # float64 positions choose float64 under x64 whatever the model: these do not
        default = predict(model, params, z, r32)["forces"]
        explicit = predict(model, params, z, r32.astype(np.float64), dtype="float64")["forces"]
        np.testing.assert_array_equal(default, explicit)
        data = load_dataset(DATA).subset(np.arange(2))
        np.testing.assert_array_equal(predict_dataset(model, params, data).forces,
                                      predict_dataset(model, params, data, dtype="float64").forces)
        simulate(model, params, atoms, steps=2, save_every=1, chunk_frames=2, checkpoint_path=str(tmp_path / "md.npz"))
        with np.load(tmp_path / "md.npz") as saved:
            assert saved["momenta"].dtype == np.float64
    rounded = predict(model, params, z, r, dtype="float32")["forces"]
    assert not np.array_equal(rounded, predict(model, params, z, r)["forces"])
    message = (r"^{}: the model holds float64 weights \(trained with --float64\), but JAX's 64-bit mode is off, so it "
               r"runs in float32 with its weights rounded: call jax\.config\.update\('jax_enable_x64', True\) first "
               r"to run it in its precision, or give dtype='float32' to choose float32$")
    with jax.enable_x64(False):
        with pytest.warns(PhysNetInputWarning, match=message.format("PhysNetCalculator")) as caught:
            calc = PhysNetCalculator(model, params)
        assert calc.dtype == np.float32 and caught[0].filename == __file__
        with pytest.warns(PhysNetInputWarning, match=message.format("predict")):
            np.testing.assert_array_equal(predict(model, params, z, r)["forces"], rounded)
        with warnings_as_errors():
            assert PhysNetCalculator(model, params, dtype="float32").dtype == np.float32
            predict(model, params, z, r, dtype="float32")
