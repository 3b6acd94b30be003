"""How physnetjax compiles (physnetjax.compilation): the YNNPACK fusions are really off on the CPU, in the
training steps and in the model evaluation of predict and the calculator; the training step's loss and
gradients and the energies and forces equal those of plain ``jax.jit`` (float64, to round-off) and float32
stays as close to float64 as before; a backend or jax without the option gets plain ``jax.jit``."""

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from physnetjax.data import load_npz
from physnetjax.model import PhysNet
from physnetjax.neighbors import apply_batch, batch_molecules, model_pair_cutoff
from physnetjax.predict import init_params, jitted_apply
from physnetjax import compilation
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


def _filter_and_reduce(radial, kernel):
    return jnp.sum(jnp.dot(radial, kernel) * radial[:, :1], axis=0)


def _ynn_fused_case():
    """(function, args) that XLA:CPU's defaults compile with YNNPACK fusions; skips where there are none."""
    if jax.default_backend() != "cpu":
        pytest.skip("the option concerns XLA:CPU")
    args = (np.ones((1152, 16), np.float32), np.ones((16, 128), np.float32))
    if "__ynn_fusion" not in jax.jit(_filter_and_reduce).lower(*args).compile().as_text():
        pytest.skip("this XLA does not use YNNPACK fusions here; nothing to switch off")
    return _filter_and_reduce, args


def test_cpu_functions_are_compiled_without_ynn_fusions():
    filter_and_reduce, args = _ynn_fused_case()
    assert compilation.compiler_options() == compilation.CPU_COMPILER_OPTIONS
    assert "__ynn_fusion" not in compilation.jit(filter_and_reduce).lower(*args).compile().as_text()


def test_step_loss_and_gradients_equal_plain_jit_and_float32_stays_as_close_to_float64():
    loss_and_grads, params, batch, labels = _loss_and_grads_inputs(jnp.float64)
    loss_step, grads_step = compilation.jit(loss_and_grads)(params, batch, labels)
    loss64, grads64 = jax.jit(loss_and_grads)(params, batch, labels)
    assert float(loss_step) > 0.0
    np.testing.assert_allclose(float(loss_step), float(loss64), rtol=1e-12)
    reference = _flat(grads64)
    np.testing.assert_allclose(_flat(grads_step), reference, rtol=1e-10, atol=1e-12 * np.abs(reference).max())

    loss_and_grads32, params32, batch32, labels32 = _loss_and_grads_inputs(jnp.float32)
    loss32, grads32 = compilation.jit(loss_and_grads32)(params32, batch32, labels32)
    assert np.asarray(loss32).dtype == np.float32
    np.testing.assert_allclose(float(loss32), float(loss64), rtol=1e-5)
    assert np.abs(_flat(grads32) - reference).max() <= 1e-4 * np.abs(reference).max()


def _apply_inputs(dtype):
    """A small PhysNet (perturbed float64 weights cast to ``dtype``) and a batch of four molecules of the mixed set."""
    dataset = load_npz(MIXED)
    model = PhysNet(features=8, max_degree=1, num_iterations=2, num_basis_functions=4, cutoff=4.0,
                    max_atomic_number=int(dataset.Z.max()), zbl=False, param_dtype=dtype)
    params = cast_params(perturbed_params(init_params(model.clone(param_dtype=jnp.float64), 0)), dtype)
    rows = [0, 20, 40, 60]
    batch = batch_molecules([dataset.Z[k, : dataset.N[k]] for k in rows],
                            [dataset.R[k, : dataset.N[k]] for k in rows], model.cutoff,
                            pair_cutoff=model_pair_cutoff(model), dtype=np.dtype(dtype))
    return model, params, batch


def test_model_evaluation_is_compiled_without_ynn_fusions():
    """``jitted_apply`` (predict, the ASE calculator) compiles with the options, like the training steps."""
    if jax.default_backend() != "cpu":
        pytest.skip("the option concerns XLA:CPU")
    model, params, batch = _apply_inputs(jnp.float32)
    plain = jax.jit(lambda p, b: apply_batch(model, p, b)).lower(params, batch).compile().as_text()
    if "__ynn_fusion" not in plain:
        pytest.skip("this XLA does not use YNNPACK fusions here; nothing to switch off")
    assert "__ynn_fusion" not in jitted_apply(model).lower(params, batch).compile().as_text()


def test_energies_and_forces_equal_plain_jit_and_float32_stays_as_close_to_float64():
    model, params, batch = _apply_inputs(jnp.float64)
    ours = jitted_apply(model)(params, batch)
    plain = jax.jit(lambda p, b: apply_batch(model, p, b))(params, batch)
    forces = np.asarray(plain["forces"])
    assert np.abs(forces).max() > 1e-3  # perturbed weights: forces to compare, not zeros
    np.testing.assert_allclose(np.asarray(ours["energy"]), np.asarray(plain["energy"]), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(np.asarray(ours["forces"]), forces, rtol=1e-10, atol=1e-12 * np.abs(forces).max())

    model32, params32, batch32 = _apply_inputs(jnp.float32)
    ours32 = jitted_apply(model32)(params32, batch32)
    assert np.asarray(ours32["forces"]).dtype == np.float32
    # float32 round-off through two message passes and the backward pass: ~1e-6 relative per operation
    energy = np.asarray(plain["energy"])
    assert np.abs(np.asarray(ours32["energy"]) - energy).max() <= 1e-5 * max(1.0, np.abs(energy).max())
    assert np.abs(np.asarray(ours32["forces"]) - forces).max() <= 1e-4 * np.abs(forces).max()


def test_compiled_functions_work_inside_other_traces_and_the_probe_inside_a_trace():
    """jax refuses XLA options on a jit called inside another trace; the plain compilation runs there instead."""
    compilation.compiler_options.cache_clear()
    try:
        # first use inside a trace (as init_params under jax.eval_shape): the options must still be found
        shape = jax.eval_shape(lambda x: compilation.jit(jnp.sin)(x), jax.ShapeDtypeStruct((3,), jnp.float64))
        assert shape.shape == (3,)
        if jax.default_backend() == "cpu":
            assert compilation.compiler_options() == compilation.CPU_COMPILER_OPTIONS
    finally:
        compilation.compiler_options.cache_clear()

    def energy(x):
        return jnp.sum(jnp.sin(x) * x)

    compiled = compilation.jit(energy)
    x = jnp.linspace(0.1, 1.0, 5)
    expected_grad = np.sin(np.asarray(x)) + np.asarray(x) * np.cos(np.asarray(x))
    np.testing.assert_allclose(float(compiled(x)), float(np.sum(np.sin(x) * x)), rtol=1e-14)
    np.testing.assert_allclose(jax.grad(compiled)(x), expected_grad, rtol=1e-14)
    np.testing.assert_allclose(jax.jit(jax.grad(compiled))(x), expected_grad, rtol=1e-14)
    np.testing.assert_allclose(jax.jit(lambda y: compiled(y) * 2.0)(x), 2.0 * float(np.sum(np.sin(x) * x)),
                               rtol=1e-14)
    assert "__ynn_fusion" not in compiled.lower(x).compile().as_text()


def test_compiled_function_errors_are_not_swallowed_or_retried():
    traces = []

    def refuse(x):
        traces.append(x.shape)
        raise ValueError("positions must have shape (N, 3)")

    with pytest.raises(ValueError, match="shape"):
        compilation.jit(refuse)(jnp.zeros(5))
    assert traces == [(5,)]


def test_one_system_compiles_with_the_options_from_system_min_atoms_on():
    """MD of a small molecule keeps XLA's default kernels (faster there), larger systems get the options."""
    filter_and_reduce, args = _ynn_fused_case()
    small = compilation.jit_for_system(compilation.SYSTEM_MIN_ATOMS - 1, filter_and_reduce)
    large = compilation.jit_for_system(compilation.SYSTEM_MIN_ATOMS, filter_and_reduce)
    assert "__ynn_fusion" in small.lower(*args).compile().as_text()
    assert "__ynn_fusion" not in large.lower(*args).compile().as_text()
    np.testing.assert_array_equal(np.asarray(small(*args)), np.asarray(large(*args)))


def test_other_backends_get_plain_jit(monkeypatch):
    compilation.compiler_options.cache_clear()
    monkeypatch.setattr(jax, "default_backend", lambda: "gpu")
    try:
        assert compilation.compiler_options() is None
    finally:
        compilation.compiler_options.cache_clear()


def test_jax_without_the_option_gets_plain_jit(monkeypatch):
    plain_jit = jax.jit

    def jit_rejecting_options(fn, **kwargs):
        if "compiler_options" in kwargs:
            raise TypeError("jit() got an unexpected keyword argument 'compiler_options'")
        return plain_jit(fn, **kwargs)

    compilation.compiler_options.cache_clear()
    monkeypatch.setattr(jax, "jit", jit_rejecting_options)
    try:
        assert compilation.compiler_options() is None
        step = compilation.jit(lambda x: 2.0 * x)
        assert float(step(np.float64(1.5))) == 3.0
    finally:
        compilation.compiler_options.cache_clear()
