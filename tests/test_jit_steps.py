"""The trainer's step compilation (physnetjax.train.jit_steps): the YNNPACK fusions are really off on the CPU,
the training step's loss and gradients equal those of plain ``jax.jit`` (float64, to round-off) and a float32
step is as close to float64 as before, and a backend or jax without the option gets plain ``jax.jit``."""

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from physnetjax.data import load_npz
from physnetjax.model import PhysNet
from physnetjax.predict import init_params
from physnetjax.train import jit_steps
from physnetjax.train.batching import batch_shapes, iterate_batches
from physnetjax.train.config import TrainConfig
from physnetjax.train.loss import loss_weights
from physnetjax.train.optim import make_optimizer, make_schedule, step_functions

from conftest import cast_params, perturbed_params

MIXED = Path(__file__).parent / "data" / "neighbors_mixed.npz"


def _loss_and_grads_inputs(dtype):
    dataset = load_npz(MIXED)
    model = PhysNet(features=8, max_degree=1, num_iterations=1, num_basis_functions=4, cutoff=4.0,
                    max_atomic_number=int(dataset.Z.max()), zbl=False, param_dtype=dtype)
    params = cast_params(perturbed_params(init_params(model.clone(param_dtype=jnp.float64), 0)), dtype)
    shapes = batch_shapes(dataset, model, 2)
    energies = dataset.E - dataset.E.mean()
    batch, labels = next(iterate_batches(dataset, np.array([0, 60]), energies, model, 2, shapes,
                                         dtype=np.dtype(dtype)))
    config = TrainConfig(batch_size=2)
    loss_and_grads = step_functions(model, make_optimizer(config, make_schedule(config, 1)), loss_weights(config),
                                    "mse", 0.999)[2]
    return loss_and_grads, params, batch, labels


def _flat(tree):
    return np.concatenate([np.ravel(np.asarray(leaf, np.float64)) for leaf in jax.tree_util.tree_leaves(tree)])


def test_cpu_steps_are_compiled_without_ynn_fusions():
    if jax.default_backend() != "cpu":
        pytest.skip("the option concerns XLA:CPU")

    def filter_and_reduce(radial, kernel):
        return jnp.sum(jnp.dot(radial, kernel) * radial[:, :1], axis=0)

    args = (np.ones((1152, 16), np.float32), np.ones((16, 128), np.float32))
    plain = jax.jit(filter_and_reduce).lower(*args).compile().as_text()
    if "__ynn_fusion" not in plain:
        pytest.skip("this XLA does not use YNNPACK fusions here; nothing to switch off")
    assert jit_steps.step_compiler_options() == jit_steps.CPU_STEP_COMPILER_OPTIONS
    assert "__ynn_fusion" not in jit_steps.jit_step(filter_and_reduce).lower(*args).compile().as_text()


def test_step_loss_and_gradients_equal_plain_jit_and_float32_stays_as_close_to_float64():
    loss_and_grads, params, batch, labels = _loss_and_grads_inputs(jnp.float64)
    loss_step, grads_step = jit_steps.jit_step(loss_and_grads)(params, batch, labels)
    loss64, grads64 = jax.jit(loss_and_grads)(params, batch, labels)
    assert float(loss_step) > 0.0
    np.testing.assert_allclose(float(loss_step), float(loss64), rtol=1e-12)
    reference = _flat(grads64)
    np.testing.assert_allclose(_flat(grads_step), reference, rtol=1e-10, atol=1e-12 * np.abs(reference).max())

    loss_and_grads32, params32, batch32, labels32 = _loss_and_grads_inputs(jnp.float32)
    loss32, grads32 = jit_steps.jit_step(loss_and_grads32)(params32, batch32, labels32)
    assert np.asarray(loss32).dtype == np.float32
    np.testing.assert_allclose(float(loss32), float(loss64), rtol=1e-5)
    assert np.abs(_flat(grads32) - reference).max() <= 1e-4 * np.abs(reference).max()


def test_other_backends_get_plain_jit(monkeypatch):
    jit_steps.step_compiler_options.cache_clear()
    monkeypatch.setattr(jax, "default_backend", lambda: "gpu")
    try:
        assert jit_steps.step_compiler_options() is None
    finally:
        jit_steps.step_compiler_options.cache_clear()


def test_jax_without_the_option_gets_plain_jit(monkeypatch):
    plain_jit = jax.jit

    def jit_rejecting_options(fn, **kwargs):
        if "compiler_options" in kwargs:
            raise TypeError("jit() got an unexpected keyword argument 'compiler_options'")
        return plain_jit(fn, **kwargs)

    jit_steps.step_compiler_options.cache_clear()
    monkeypatch.setattr(jax, "jit", jit_rejecting_options)
    try:
        assert jit_steps.step_compiler_options() is None
        step = jit_steps.jit_step(lambda x: 2.0 * x)
        assert float(step(np.float64(1.5))) == 3.0
    finally:
        jit_steps.step_compiler_options.cache_clear()
