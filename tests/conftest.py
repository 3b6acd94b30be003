"""Shared test set-up.

The whole suite runs with JAX's x64 mode on, so float64 physics checks are real
float64; float32 paths are exercised by passing float32 arrays/params explicitly.

XLA's LLVM backend runs at optimisation level 0 in the tests
(``--xla_backend_optimization_level=0``, unless ``XLA_FLAGS`` already sets a level):
the suite compiles hundreds of small programs and runs most of them a few times, so
compilation dominates (2026-12-02, 2 idle cores, two pairs of runs one after the
other: 6 min 43 s at level 0 against 8 min 41 s at the default level 3, and 10 min 46 s
against 15 min 37 s; single files 15-45 % faster).
XLA's own graph optimisations (fusion, algebraic simplification) still run; only
LLVM's optimisation of each kernel's machine code is skipped. The kernels compute
the same operations; where LLVM would vectorise a reduction, the order of its sums,
and so the last bits, may differ, which every test's tolerance allows (the suite
passes at both levels). To run the tests at the default level:
``XLA_FLAGS=--xla_backend_optimization_level=3 python -m pytest``.

XLA:CPU's fusion emitters are off in the tests as well
(``--xla_cpu_use_fusion_emitters=false``, unless ``XLA_FLAGS`` already names the
option): fused loops are then emitted by XLA's older loop emitter instead of being
lowered through MLIR, which cuts the compile time of a model program at level 0 by about 40 %
(2026-12-03, 2 idle cores: 4.8 -> 2.6-3.0 s for a correlation-3 model's energy and
forces, 1.3 -> 0.6-0.9 s for the default test model, the same run time) and took the
suite from 13 min 48 s and 14 min 33 s (two runs that afternoon) to 9 min 41 s. The
fused operations are the same; only the code generating each kernel differs, so again
at most the last bits of a reduction may change, and the suite passes either way
(``XLA_FLAGS=--xla_cpu_use_fusion_emitters=true python -m pytest`` runs it with them).
Each option is set only where this jaxlib's XLA knows it (one subprocess tries them at the
start of a run): XLA aborts on an unknown option in ``XLA_FLAGS``, and jaxlib 0.11 dropped
``xla_cpu_use_fusion_emitters`` (every pytest-xdist worker died at its first test).

Compiled programs are shared through JAX's persistent compilation cache, in a fresh
temporary folder per run that every process of the run uses (the pytest-xdist workers
and the CLI subprocesses inherit ``JAX_COMPILATION_CACHE_DIR``) and that the process
which created it deletes at the end. Many tests compile the same program (the same
model shapes, the same step functions, and every session fixture again after
:func:`release_compiled_programs`); a cache hit loads XLA's executable of the
identical program (the key hashes the program, the compile options, the XLA flags and
the jaxlib version), so results are unchanged. Each run starts empty, as in CI; to keep
the cache between runs, set ``JAX_COMPILATION_CACHE_DIR`` yourself.

OpenMP libraries run one thread per process in the tests (``OMP_NUM_THREADS=1`` unless
set): the two pytest-xdist workers already fill the two cores, and tblite's SCF with two
OpenMP threads waits at every parallel region for a thread the other worker has taken
(2026-12-06, both cores busy with other processes: the GFN1-xTB scan of 86 atoms in
test_xtb_shells.py 2.7 s with two threads, 0.16 s with one; IPEA1-xTB 5.2 s and 3.7 s;
80 s in one suite run beside helper sessions). XLA's own thread pool is not affected.
"""

import contextlib
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import warnings

TEST_XLA_FLAGS = {"xla_backend_optimization_level": "0", "xla_cpu_use_fusion_emitters": "false"}


def xla_accepts(flags: str) -> bool:
    """Whether this jaxlib's XLA starts with ``flags`` in ``XLA_FLAGS`` (an unknown flag aborts the process:
    jaxlib 0.11 no longer knows ``xla_cpu_use_fusion_emitters``), tried in a subprocess on the CPU."""
    probe = subprocess.run([sys.executable, "-c", "import jax; jax.devices('cpu')"], capture_output=True,
                           env={**os.environ, "XLA_FLAGS": flags, "JAX_PLATFORMS": "cpu"})
    return probe.returncode == 0


os.environ.setdefault("OMP_NUM_THREADS", "1")
_missing = [f"--{flag}={value}" for flag, value in TEST_XLA_FLAGS.items()
            if flag not in os.environ.get("XLA_FLAGS", "")]
if _missing:
    _known = _missing if xla_accepts(" ".join(_missing)) else [f for f in _missing if xla_accepts(f)]
    os.environ["XLA_FLAGS"] = " ".join([os.environ.get("XLA_FLAGS", ""), *_known]).strip()

RUN_COMPILATION_CACHE = None
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
    RUN_COMPILATION_CACHE = tempfile.mkdtemp(prefix="physnetjax-tests-xla-cache-")
    os.environ["JAX_COMPILATION_CACHE_DIR"] = RUN_COMPILATION_CACHE
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")

import jax  # noqa: E402  (after XLA_FLAGS: XLA reads them when the backend starts)
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from physnetjax.units import BOHR, HARTREE

jax.config.update("jax_enable_x64", True)
jax.config.update("jax_compilation_cache_dir", os.environ["JAX_COMPILATION_CACHE_DIR"])
jax.config.update("jax_persistent_cache_min_compile_time_secs",
                  float(os.environ.get("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", 1.0)))

DATA = pathlib.Path(__file__).parent / "data"

THIRD_PARTY_DEPRECATIONS = ("Setting the shape on a NumPy array has been deprecated",)
"""Deprecation warnings raised inside code the library calls, not by it (ASE 3.29 sets ``ndarray.shape`` when it
reads ``.traj`` and extxyz files and in its calculator, which NumPy 2.5 deprecates): pytest shows deprecations,
so they are ignored (:func:`pytest_configure`, :func:`ignore_third_party_deprecations`) where a test asserts that
no warning, or exactly its own warnings, are raised."""


def pytest_configure(config):
    for message in THIRD_PARTY_DEPRECATIONS:
        config.addinivalue_line("filterwarnings", f"ignore:{message}:DeprecationWarning")


def ignore_third_party_deprecations() -> None:
    """Add :data:`THIRD_PARTY_DEPRECATIONS` as ignored to the current warning filters (after a ``simplefilter``)."""
    for message in THIRD_PARTY_DEPRECATIONS:
        warnings.filterwarnings("ignore", message=message, category=DeprecationWarning)


@contextlib.contextmanager
def warnings_as_errors():
    """Inside it every warning is raised as an error, except :data:`THIRD_PARTY_DEPRECATIONS`."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ignore_third_party_deprecations()
        yield


def load_molecule(name: str) -> tuple[np.ndarray, np.ndarray]:
    """(Z, R) of a reference geometry in tests/data/molecules.npz (R in Å, float64).

    Sources (copied from ../shared/data, first frame): ethanol, methanol and CO2 from the
    GFN2-xTB 500 K sets; base_a from basepairs/a.npz (DFT, 15 atoms).
    """
    data = np.load(DATA / "molecules.npz")
    return data[f"{name}_Z"].astype(np.int32), data[f"{name}_R"].astype(np.float64)


def perturbed_params(params, scale: float = 0.2, seed: int = 0):
    """Add Gaussian noise to the network parameters so zero-initialised heads give non-zero terms.

    The ZBL screening parameters (``repulsion``) keep their universal values, so the
    repulsion stays physical (noise could make an exponent negative).
    """
    leaves, treedef = jax.tree_util.tree_flatten_with_path(params)
    keys = jax.random.split(jax.random.PRNGKey(seed), len(leaves))
    noisy = [
        leaf if "repulsion" in jax.tree_util.keystr(path)
        else leaf + scale * jax.random.normal(k, leaf.shape, leaf.dtype)
        for (path, leaf), k in zip(leaves, keys)
    ]
    return jax.tree_util.tree_unflatten(treedef, noisy)


def random_params(model, seed: int, scale: float = 0.3) -> dict:
    """Gaussian float32 weights N(0, scale²) of the shapes ``init_params`` gives (traced, not compiled: fast)."""
    from physnetjax import init_params

    rng = np.random.default_rng(seed)
    shapes = jax.eval_shape(lambda: init_params(model, 0))
    return jax.tree_util.tree_map(lambda s: rng.normal(0.0, scale, s.shape).astype(np.float32), shapes)


def dftd3_reference(numbers, positions, functional: str = "pbe0", atm: bool = True):
    """(E in eV, F in eV/Å) of the reference ``dftd3`` package (D3(BJ), ``atm`` three-body)."""
    interface = pytest.importorskip("dftd3.interface")
    model = interface.DispersionModel(np.asarray(numbers), np.asarray(positions) / BOHR)
    result = model.get_dispersion(interface.RationalDampingParam(method=functional, atm=atm), grad=True)
    return float(result["energy"]) * HARTREE, -np.asarray(result["gradient"]) * HARTREE / BOHR


ATM_MODEL_SHORT_CUTOFF = pytest.mark.filterwarnings(
    r"ignore:the D3 dispersion cutoff of 6 Å is below 7\.5 Å:physnetjax.errors.PhysNetInputWarning")
"""Filter, for the modules of :func:`atm_model` and its kin, the short-D3-cutoff warning of their chosen 6 Å.

The warning comes at every call of such a model (fixture set-up included); the cutoff is meant (small molecules,
exact against dftd3, few triplets), so it says nothing there. Only the 6 Å message is filtered: any other cutoff
still warns, and test_model_dispersion.py asserts the warning itself.
"""


@pytest.fixture(scope="session")
def atm_model():
    """Small float64 PhysNet with D3(BJ)+ATM, PBE0, dispersion cutoff 6 Å (switch over [4.8, 6] Å).

    Molecules that fit inside 4.8 Å never feel the switch, so dftd3 is an exact oracle.
    """
    from physnetjax import PhysNet, init_params

    model = PhysNet(dispersion="d3bj", dispersion_functional="pbe0", dispersion_three_body=True,
                    dispersion_cutoff=6.0, features=8, max_degree=1, num_iterations=1,
                    num_basis_functions=4, cutoff=4.0, charges=False, zbl=False,
                    param_dtype=jax.numpy.float64)
    return model, init_params(model)


def cast_params(params, dtype):
    return jax.tree_util.tree_map(lambda p: p.astype(dtype), params)


@pytest.fixture(scope="session")
def molecules():
    return {name: load_molecule(name) for name in ("ethanol", "methanol", "co2", "base_a")}


@pytest.fixture(autouse=True, scope="module")
def release_compiled_programs():
    """Drop JAX's caches of compiled programs after each test module.

    XLA:CPU maps the machine code of every compiled program into memory, and JAX's caches
    keep each program alive for the life of the process. One worker of the suite compiles
    thousands of programs: without this its memory mappings grew past 26,000 by mid-run and
    past the kernel's limit (vm.max_map_count, 65,530 here) near its end, where the next
    compilation segfaulted inside XLA (three of six full runs on 2026-12-03, at random tests)
    and pytest-xdist then hung on the lost worker. Programs that session-scoped fixtures
    still reference are kept; the rest are recompiled when a later module needs them.
    """
    yield
    jax.clear_caches()


def pytest_unconfigure(config):
    """Delete this run's compilation cache (in the process that created it: the xdist controller or the only one)."""
    if RUN_COMPILATION_CACHE is not None:
        shutil.rmtree(RUN_COMPILATION_CACHE, ignore_errors=True)
