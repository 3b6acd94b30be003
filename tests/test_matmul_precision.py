"""The model's matrix products are traced at full float32 precision unless the user chose one.

On a GPU, XLA computes a float32 product without a precision as TF32 (benchmarks/gpu_precision.py:
float32 forces 400x further from float64 on an H200). The CPU cannot show that difference, so these
tests read the precision that each ``dot_general`` of the traced program carries (tracing only, no
compilation).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from physnetjax import PhysNet, PhysNetEnsemble, apply_batch, batch_molecules, init_params
from physnetjax.ensemble import stack_members
from physnetjax.neighbors import model_pair_cutoff

HIGHEST = (jax.lax.Precision.HIGHEST, jax.lax.Precision.HIGHEST)


def dot_precisions(closed_jaxpr) -> list:
    """The ``precision`` of every ``dot_general`` in the program, sub-programs (scan, pjit, custom rules) included."""
    found = []

    def walk(jaxpr):
        for eqn in jaxpr.eqns:
            if eqn.primitive.name == "dot_general":
                found.append(eqn.params["precision"])
            for value in eqn.params.values():
                for item in value if isinstance(value, (tuple, list)) else (value,):
                    inner = getattr(item, "jaxpr", item)
                    if hasattr(inner, "eqns"):
                        walk(inner)

    walk(closed_jaxpr.jaxpr)
    return found


@pytest.fixture(scope="module")
def float32_case():
    """A float32 model with every pair term (charges, Coulomb, ZBL, D3) and a batch of two ethanol-like molecules."""
    model = PhysNet(features=8, max_degree=1, num_iterations=2, n_res=1, num_basis_functions=8, cutoff=4.0,
                    charges=True, zbl=True, dispersion="d3bj", param_dtype=jnp.float32)
    rng = np.random.default_rng(0)
    z = np.array([6, 6, 8, 1, 1, 1, 1, 1, 1])
    positions = [rng.normal(scale=1.2, size=(9, 3)) for _ in range(2)]
    batch = batch_molecules([z, z], positions, model.cutoff, pair_cutoff=model_pair_cutoff(model),
                            dtype=np.float32)
    params = jax.eval_shape(lambda: init_params(model, 0))
    return model, params, batch


def test_energy_forces_and_parameter_gradients_use_full_float32_products(float32_case):
    """On main every product had precision None: XLA's default, TF32 on an NVIDIA GPU."""
    model, params, batch = float32_case
    outputs = jax.make_jaxpr(lambda p: apply_batch(model, p, batch))(params)
    loss = jax.make_jaxpr(jax.grad(lambda p: jnp.sum(apply_batch(model, p, batch)["forces"] ** 2)))(params)
    for program in (outputs, loss):
        precisions = dot_precisions(program)
        assert len(precisions) > 10  # dense layers, tensor products and their transposes
        assert set(precisions) == {HIGHEST}, set(precisions)


def test_an_ensemble_uses_full_float32_products(float32_case):
    model, params, batch = float32_case
    ensemble = PhysNetEnsemble(member=model, size=2)
    stacked = jax.eval_shape(lambda: stack_members([init_params(model, 0), init_params(model, 1)]))
    precisions = dot_precisions(jax.make_jaxpr(lambda p: apply_batch(ensemble, p, batch))(stacked))
    assert precisions and set(precisions) == {HIGHEST}


@pytest.mark.parametrize("chosen, expected", [("tensorfloat32", jax.lax.Precision.HIGH),
                                              ("bfloat16", jax.lax.Precision.DEFAULT)])
def test_a_precision_the_user_chose_is_kept(float32_case, chosen, expected):
    model, params, batch = float32_case
    with jax.default_matmul_precision(chosen):
        precisions = dot_precisions(jax.make_jaxpr(lambda p: apply_batch(model, p, batch))(params))
    assert precisions and set(precisions) == {(expected, expected)}
    # and the setting ends with the context: the next trace is at full precision again
    assert set(dot_precisions(jax.make_jaxpr(lambda p: apply_batch(model, p, batch))(params))) == {HIGHEST}
