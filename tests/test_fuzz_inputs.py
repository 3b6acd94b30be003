"""Property-based fuzz of the input boundary (issue 17): predict and the ASE calculator.

Random shapes, dtypes, NaN/Inf, coincident atoms, huge and negative coordinates, odd
cells and PBC, odd total charges. For every input the result is either a clear
``ValueError`` (``PhysNetInputError`` and its subclasses are ValueErrors) or finite
outputs — never a NaN, never another exception type, never a crash in C++.

One small model; the calculator pads to buckets, so its examples share a handful of
compiled shapes; predict compiles per exact shape, so its structures stay tiny.
"""

import warnings

import ase
import jax
import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from conftest import cast_params, perturbed_params  # noqa: E402
from physnetjax import PhysNet, init_params, predict  # noqa: E402
from physnetjax.calculator import PhysNetCalculator  # noqa: E402

FUZZ = settings(max_examples=2, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])

FAULTS = ("none", "shape", "z_dtype", "r_dtype", "non_finite", "huge", "negative", "coincident", "close", "bad_z",
          "charge")
ODD_VALUES = [np.nan, np.inf, -np.inf]
ODD_CHARGES = [np.nan, np.inf, -np.inf, 1e9, "1", None, [0.0]]
ODD_CELLS = [
    np.zeros((3, 3)), np.diag([5.0, 5.0, 0.0]), np.diag([5.0, 1e-9, 5.0]), np.diag([0.05, 5.0, 5.0]),
    np.array([[5.0, 0, 0], [10.0, 0, 0], [0, 0, 5.0]]), np.full((3, 3), np.nan), np.diag([1e6, 5.0, 5.0]),
]


@st.composite
def cells(draw):
    """An odd cell of :data:`ODD_CELLS` or a sheared box with edges 2.5–8 Å."""
    if draw(st.booleans()):
        return draw(st.sampled_from(ODD_CELLS))
    diagonal = np.diag(draw(st.lists(st.floats(2.5, 8.0), min_size=3, max_size=3)))
    shear = np.array(draw(st.lists(st.floats(-1.0, 1.0), min_size=9, max_size=9))).reshape(3, 3)
    return diagonal + np.triu(shear, 1)


@st.composite
def structures(draw, max_atoms: int, fault: str):
    """(Z, R, Q): a plausible small structure with ``fault`` (one of :data:`FAULTS`) applied."""
    n = draw(st.integers(1, max_atoms))
    z = np.array(draw(st.lists(st.integers(1, 9), min_size=n, max_size=n)))
    r = np.array(draw(st.lists(st.floats(-3.0, 3.0), min_size=3 * n, max_size=3 * n))).reshape(n, 3)
    q = draw(st.floats(-2.0, 2.0))
    k = draw(st.integers(0, n - 1))
    if fault == "shape":
        r = r.reshape(-1)[: draw(st.sampled_from([3 * n - 1, 2 * n, n]))].reshape(-1, 1) if n > 1 else r[:, :2]
    elif fault == "z_dtype":
        z = z.astype(draw(st.sampled_from([np.float64, np.uint8, bool, np.int8]))) + draw(st.sampled_from([0, 0.5]))
    elif fault == "r_dtype":
        r = r.astype(draw(st.sampled_from([np.float32, np.int64, np.complex128, np.float16])))
    elif fault == "non_finite":
        r[k, draw(st.integers(0, 2))] = draw(st.sampled_from(ODD_VALUES))
    elif fault == "huge":
        r[k] *= draw(st.sampled_from([1e3, 1e4, 1e5, 1e30]))
    elif fault == "negative":
        r -= draw(st.sampled_from([10.0, 500.0, 9000.0]))
    elif fault in ("coincident", "close") and n >= 2:
        r[1] = r[0] + (0.0 if fault == "coincident" else draw(st.sampled_from([1e-6, 0.05, 0.099, 0.101, 0.3])))
    elif fault == "bad_z":
        z[k] = draw(st.sampled_from([0, -1, 10, 118, 119, 2**40]))
    elif fault == "charge":
        q = draw(st.sampled_from(ODD_CHARGES))
    return z, r, q


def finite_or_value_error(call):
    """Run ``call``; a ValueError is a clear refusal, anything else must be finite."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            out = call()
        except ValueError as error:
            assert str(error), "a refusal must say why"
            hypothesis.event(f"refused: {type(error).__name__}")
            return
    hypothesis.event("evaluated")
    for key, value in out.items():
        if value is not None:
            assert np.all(np.isfinite(np.asarray(value, dtype=np.float64))), (key, value)


@pytest.fixture(scope="module")
def model_and_params():
    jax.config.update("jax_enable_x64", True)
    model = PhysNet(features=8, max_degree=1, num_iterations=1, num_basis_functions=8, cutoff=3.0,
                    max_atomic_number=9, charges=True, zbl=True, n_res=1, coulomb_lr_cutoff=4.0)
    return model, cast_params(perturbed_params(init_params(model, 0), 0.2, seed=7), np.float64)


@pytest.fixture(scope="module")
def calculator(model_and_params):
    return PhysNetCalculator(*model_and_params, dtype="float64", atom_bucket=8, edge_bucket=512)


@pytest.mark.parametrize("fault", FAULTS)
def test_predict_refuses_clearly_or_returns_finite_numbers(model_and_params, fault):
    @FUZZ
    @given(structure=structures(3, fault))
    def check(structure):
        z, r, q = structure
        finite_or_value_error(lambda: predict(*model_and_params, z, r, total_charge=q))

    check()


@pytest.mark.parametrize("fault", FAULTS + ("cell",))
def test_calculator_refuses_clearly_or_returns_finite_numbers(calculator, fault):
    """Faults of the structure with a random cell/PBC; fault "cell": a valid structure with an odd cell."""

    @FUZZ
    @given(structure=structures(4, "none" if fault == "cell" else fault),
           cell=cells() if fault == "cell" else st.just(np.diag([6.0, 6.0, 6.0])),
           pbc=st.lists(st.booleans(), min_size=3, max_size=3))
    def check(structure, cell, pbc):
        z, r, q = structure

        def call():
            try:
                atoms = ase.Atoms(numbers=z, positions=r, cell=cell, pbc=pbc)
            except (ValueError, TypeError) as error:  # ASE itself refuses it: not our boundary
                raise ValueError(str(error)) from error
            atoms.info["charge"] = q
            atoms.calc = calculator
            return {"energy": atoms.get_potential_energy(), "forces": atoms.get_forces()}

        finite_or_value_error(call)

    check()
