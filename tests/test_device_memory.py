"""Programs too large for the device's memory are refused before they run (physnetjax.device_memory).

On the CPU an allocation beyond the free memory usually succeeds and the kernel's out-of-memory killer then ends the
process without a message (measured: a D3+ATM model on a 24-atom periodic water box, a program of 24 GB, exit 137).
Here the free memory is replaced by a small number: every compiled entry point (the calculator and predict, MD,
eval, training) must raise OutOfMemoryError naming the sizes before its program runs, and only once per shape.
"""

import gc
import re
import weakref
from pathlib import Path

import ase
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from physnetjax import PhysNet, compilation, device_memory, init_params
from physnetjax.calculator import PhysNetCalculator
from physnetjax.cli_errors import EXIT_INPUT, error_line, exit_code
from physnetjax.data import load_npz
from physnetjax.errors import OutOfMemoryError, is_out_of_memory
from physnetjax.train.batching import batch_shapes

DATA = Path(__file__).parent / "data" / "train_ethanol64.npz"
METHANE = ase.Atoms("CH4", positions=[[0, 0, 0], [1.09, 0, 0], [-0.36, 1.03, 0], [-0.36, -0.51, 0.89],
                                      [-0.36, -0.51, -0.89]])


def _free_bytes(monkeypatch, size):
    monkeypatch.setattr(device_memory, "available_bytes", lambda device=None: size)


def test_the_cpus_free_memory_is_the_kernels_estimate(tmp_path, monkeypatch):
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal:       24000000 kB\nMemFree:         1000000 kB\nMemAvailable:    2000000 kB\n")
    monkeypatch.setattr(device_memory, "MEMINFO", str(meminfo))
    assert device_memory.available_bytes() == 2000000 * 1024
    monkeypatch.setattr(device_memory, "PROC_CGROUP", str(tmp_path / "no cgroups"))
    meminfo.write_text("MemTotal:       24000000 kB\n")  # a kernel without the estimate: nothing is checked
    assert device_memory.available_bytes() is None
    monkeypatch.setattr(device_memory, "MEMINFO", str(tmp_path / "missing"))
    assert device_memory.available_bytes() is None


class _FakeGPU:
    platform, device_kind = "gpu", "fake"

    def __init__(self, stats):
        self.stats = stats

    def memory_stats(self):
        return self.stats


def test_a_gpus_free_memory_is_its_allocators_limit_less_its_use():
    assert device_memory.available_bytes(_FakeGPU({"bytes_limit": 10_000, "bytes_in_use": 3_000})) == 7_000
    assert device_memory.available_bytes(_FakeGPU({"bytes_limit": 10_000})) == 10_000
    assert device_memory.available_bytes(_FakeGPU(None)) is None  # a backend without statistics: nothing checked


def _write_group(folder, files: dict):
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (folder / name).write_text(text)


def test_a_control_group_memory_limit_bounds_the_free_memory(tmp_path, monkeypatch):
    """A batch job's or container's memory limit (SLURM --mem: the kernel kills past it as it does past the RAM):
    the room is limit - usage + reclaimable page cache, the smallest over the process's group and its ancestors,
    cgroup v1 and v2 alike; no limit anywhere leaves MemAvailable."""
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemAvailable:    2000000 kB\n")
    monkeypatch.setattr(device_memory, "MEMINFO", str(meminfo))
    monkeypatch.setattr(device_memory, "CGROUP_ROOT", str(tmp_path / "cgroup"))
    monkeypatch.setattr(device_memory, "PROC_CGROUP", str(tmp_path / "self_cgroup"))
    (tmp_path / "self_cgroup").write_text("4:memory:/job/step\n3:cpu:/job/step\n0::/job/step\n")
    v1, v2 = tmp_path / "cgroup" / "memory", tmp_path / "cgroup"
    unlimited_v1 = {"memory.limit_in_bytes": "9223372036854771712\n", "memory.usage_in_bytes": "5\n",
                    "memory.stat": "total_inactive_file 0\n"}
    _write_group(v1, unlimited_v1)
    _write_group(v1 / "job", unlimited_v1)
    _write_group(v1 / "job" / "step", unlimited_v1)
    _write_group(v2 / "job" / "step", {"memory.max": "max\n", "memory.current": "7\n", "memory.stat": "anon 7\n"})
    assert device_memory.available_bytes() == 2000000 * 1024  # no limit anywhere
    _write_group(v1 / "job" / "step", {"memory.limit_in_bytes": "7000000000\n", "memory.usage_in_bytes": "6000000000\n",
                                       "memory.stat": "cache 1\ntotal_inactive_file 500000000\n"})
    assert device_memory.available_bytes() == 1_500_000_000  # 7e9 - 6e9 + 0.5e9, below MemAvailable's 2.048e9
    _write_group(v1 / "job", {"memory.limit_in_bytes": "5000000000\n", "memory.usage_in_bytes": "4500000000\n",
                              "memory.stat": "total_inactive_file 0\n"})
    assert device_memory.available_bytes() == 500_000_000  # the parent's limit is nearer
    _write_group(v2 / "job", {"memory.max": "4000000000\n", "memory.current": "3900000000\n",
                              "memory.stat": "inactive_file 50000000\n"})
    assert device_memory.available_bytes() == 150_000_000  # cgroup v2 beside v1


def test_allocated_bytes_count_temporaries_and_outputs_less_donated_buffers():
    """An outer product of 1000 float32 values returns 4 MB (the output's own size, independent of XLA; one
    temporary of that size at most, where XLA does not fuse the addition); the same update of a donated array
    writes into its input and allocates next to nothing."""
    x = np.ones(1000, np.float32)
    outer = jax.jit(lambda v: jnp.outer(v, v) + 1.0).lower(x).compile()
    assert 4_000_000 <= device_memory.allocated_bytes(outer) < 8_100_000
    big = jnp.ones((1000, 1000), jnp.float32)
    in_place = jax.jit(lambda v: v * 2.0, donate_argnums=0).lower(big).compile()
    assert device_memory.allocated_bytes(in_place) < 100_000


def test_a_program_larger_than_the_free_memory_is_refused_before_it_runs(monkeypatch):
    ran = []

    def outer(v):
        jax.debug.callback(lambda: ran.append(1))
        return jnp.outer(v, v)

    compiled = compilation.jit(outer)
    _free_bytes(monkeypatch, 1_000_000)
    with pytest.raises(OutOfMemoryError) as caught:
        compiled(np.ones(1000, np.float32))
    assert ran == []  # refused before running
    error = caught.value
    assert isinstance(error, MemoryError) and error.available_bytes == 1_000_000 and error.needed_bytes >= 4_000_000
    assert re.search(r"the compiled outer needs 0\.00[4-8] GB for its temporaries and outputs, 0\.001 GB are free",
                     str(error))
    assert float(compiled(np.ones(10, np.float32))[0, 0]) == 1.0 and ran == [1]  # a smaller shape fits
    _free_bytes(monkeypatch, None)  # free memory unknown: nothing is refused
    assert compiled(np.ones(1000, np.float32)).shape == (1000, 1000)


def test_each_shape_is_checked_once(monkeypatch):
    checked = []
    monkeypatch.setattr(device_memory, "check_fits", lambda compiled, what, device=None: checked.append(what))
    for dtype in (np.float32, np.float64):  # also without the CPU options (small systems, other backends)
        compiled = compilation.jit_for_system(4, lambda v, w: v * w, donate_argnums=1)
        checked.clear()
        for size in (3, 3, 5, 3):
            compiled(np.ones(size, dtype), np.ones(size, dtype))
        assert len(checked) == 2
        same = np.ones(4, dtype)
        for _ in range(3):  # the same object again (its description is reused)
            compiled(same, np.ones(4, dtype))
        assert len(checked) == 3
        released = weakref.ref(same)
        del same
        gc.collect()
        assert released() is None  # the function does not keep its last argument alive


def test_static_arguments_are_checked_for_each_value(monkeypatch):
    """A size given as a static argument chooses the program: each value is checked (by position and by name)."""
    zeros = compilation.jit(lambda size, scale: jnp.zeros(size, jnp.float32) * scale, static_argnums=0)
    named = compilation.jit(lambda scale, size: jnp.zeros(size, jnp.float32) * scale, static_argnames="size")
    _free_bytes(monkeypatch, 100_000)
    assert zeros(10, 2.0).shape == named(2.0, size=10).shape == (10,)
    with pytest.raises(OutOfMemoryError, match=r"needs 0\.004 GB"):
        zeros(1_000_000, 2.0)
    with pytest.raises(OutOfMemoryError, match=r"needs 0\.004 GB"):
        named(2.0, size=1_000_000)


def test_the_in_jit_triplet_list_is_refused_before_it_is_allocated(monkeypatch):
    """MD's triplet list (physnetjax.neighbors.allocate_triplets) is allocated by the compiled program that builds
    it, so its slots are part of the program checked: 12 atoms in a cluster, 12 * 55 triplets of all pairs."""
    from physnetjax.neighbors import allocate_triplets, neighbor_list
    positions = np.random.default_rng(0).uniform(0.0, 3.0, size=(12, 3))
    pairs = neighbor_list(None, method="dense").allocate(positions)
    _free_bytes(monkeypatch, 2_000)
    with pytest.raises(OutOfMemoryError, match="the compiled _build_fresh_triplets needs"):
        allocate_triplets(pairs, positions, np.inf)
    _free_bytes(monkeypatch, None)
    assert allocate_triplets(pairs, positions, np.inf, capacity_multiplier=1.0).capacity == 12 * 55


def test_the_calculator_and_predict_refuse_a_structure_too_large_before_evaluating(monkeypatch):
    model = PhysNet(features=5, max_degree=0, num_iterations=1, num_basis_functions=3, cutoff=3.0,
                    max_atomic_number=6, n_res=1, dispersion="d3bj", dispersion_cutoff=7.5,
                    dispersion_three_body=True)
    calc = PhysNetCalculator(model, init_params(model, 0))
    _free_bytes(monkeypatch, 1000)
    atoms = METHANE.copy()
    atoms.calc = calc
    with pytest.raises(OutOfMemoryError) as caught:
        atoms.get_potential_energy()
    message = str(caught.value)
    assert message.startswith("out of memory on cpu") and "D3 three-body triangles" in message
    assert "(the compiled program needs " in message and ", 1e-06 GB are free)" in message
    assert "model.clone(dispersion_three_body=False)" in message  # 60 triangles, 20 pairs
    _free_bytes(monkeypatch, None)
    assert np.isfinite(atoms.get_potential_energy())


def test_md_refuses_its_start_and_its_chunks_before_running(monkeypatch):
    from physnetjax.md import driver

    model = PhysNet(features=5, max_degree=0, num_iterations=1, num_basis_functions=3, cutoff=3.0,
                    max_atomic_number=6, n_res=1)
    params = init_params(model, 0)
    _free_bytes(monkeypatch, 1000)
    with pytest.raises(OutOfMemoryError) as caught:
        driver.simulate(model, params, METHANE.copy(), steps=4, save_every=2)
    message = str(caught.value)
    assert message.startswith("out of memory on cpu (cpu) starting MD of 5 atoms, 20 neighbor pairs (cutoff 3 Å)")
    assert message.endswith("use fewer frames per chunk (a smaller chunk_frames: the device holds a chunk's frames), "
                            "a device with more memory, or fewer atoms")
    _free_bytes(monkeypatch, None)

    checked = []

    def refuse_chunks(compiled, what, device=None):
        checked.append(what)
        raise OutOfMemoryError("too large", 10**12, 10**9)

    monkeypatch.setattr(driver, "check_fits", refuse_chunks)
    with pytest.raises(OutOfMemoryError) as caught:
        driver.simulate(model, params, METHANE.copy(), steps=4, save_every=2, names={"chunk_frames": "--chunk"})
    assert checked == ["a chunk of 2 frames"]
    assert str(caught.value).startswith("out of memory on cpu (cpu) running chunks of 2 frames of MD of 5 atoms")
    assert "(the compiled program needs 1000.0 GB, 1.0 GB are free)" in str(caught.value)
    assert "a smaller --chunk: the device holds" in str(caught.value)


def test_eval_and_training_refuse_batches_too_large(monkeypatch, tmp_path, capsys):
    from physnetjax.eval.predictions import predict_dataset
    from physnetjax.train.cli import main as train_main

    model = PhysNet(features=6, max_degree=0, num_iterations=1, num_basis_functions=3, cutoff=3.0,
                    max_atomic_number=8, n_res=1)
    dataset = load_npz(DATA)
    shapes = batch_shapes(dataset, model, 4)
    _free_bytes(monkeypatch, 1000)
    with pytest.raises(OutOfMemoryError) as caught:
        predict_dataset(model, init_params(model, 0), dataset, batch_size=4)
    assert str(caught.value).startswith(f"out of memory on cpu (cpu) evaluating batches of 4 frames, each device's "
                                        f"batch of {shapes.atoms} atom slots, {shapes.edges} neighbor pairs")
    assert str(caught.value).endswith("use a smaller batch_size (eval: --batch-size), or a device with more memory")

    code = train_main(["--data", str(DATA), "--out", str(tmp_path / "run"), "--epochs", "1", "--train", "8",
                       "--valid", "4", "--test", "4", "--batch-size", "2", "--features", "6", "--max-degree", "0",
                       "--num-iterations", "1", "--num-basis-functions", "3", "--warmup-epochs", "0",
                       "--no-progress"])
    err = capsys.readouterr().err
    assert code == EXIT_INPUT
    assert re.search(r"error: out of memory on cpu \(cpu\) training on batches of 2 frames, each device's batch of "
                     r"\d+ atom slots, \d+ neighbor pairs \(cutoff 5 Å\) \(the compiled program needs ", err), err
    assert err.strip().endswith("use a smaller --batch-size, or a device with more memory"), err


def test_a_raw_resource_exhausted_on_a_command_line_is_bad_input_not_a_bug():
    """XLA's own RESOURCE_EXHAUSTED, where no entry point converted it (a GPU allocation that fails while running),
    was reported as an internal error asking for a bug report."""
    raw = jax.errors.JaxRuntimeError("RESOURCE_EXHAUSTED: Out of memory allocating 186090935300 bytes.")
    assert is_out_of_memory(raw) and not is_out_of_memory(jax.errors.JaxRuntimeError("INTERNAL: something else"))
    assert exit_code(raw) == EXIT_INPUT
    assert error_line("python -m physnetjax.md", raw) == (
        "python -m physnetjax.md: error: out of memory on the device (RESOURCE_EXHAUSTED: Out of memory allocating "
        "186090935300 bytes.): the input is too large for it; use a smaller batch or system, or a device with more "
        "memory")


def test_md_counts_the_all_pairs_triangles_it_would_evaluate():
    """A molecule on the all-pairs edge set evaluates every pair-of-pairs sharing its first atom (p < q): the message
    gives their number as pair_triplets builds them, n(n-1)(n-2)/2, not twice that."""
    from physnetjax.md.driver import md_out_of_memory
    from physnetjax.md.potential import AllPairs
    from physnetjax.neighbors.molecules import molecule_pairs
    from physnetjax.neighbors.triplets import pair_triplets

    model = PhysNet(features=4, max_degree=0, num_iterations=1, num_basis_functions=3, cutoff=3.0,
                    max_atomic_number=6, n_res=1, dispersion="d3bj", dispersion_three_body=True)
    dst, _ = molecule_pairs(np.zeros((7, 3)), None)
    built = len(pair_triplets(dst, np.ones(len(dst), bool)))
    message = str(md_out_of_memory(model, 7, AllPairs(), OutOfMemoryError("too large"), "starting MD of"))
    assert f"42 neighbor pairs (cutoff 3 Å), {built} D3 three-body triangles" in message and built == 105


@pytest.mark.parametrize("pairs, triplets", [(None, None), (60, None), (None, 500), (60, 500)])
def test_md_names_the_capacities_of_its_neighbor_lists(pairs, triplets):
    """MD on neighbor lists (not all pairs): the message gives each list's capacity, what the compiled step holds,
    and leaves out the lists the run does not have."""
    from types import SimpleNamespace

    from physnetjax.md.driver import md_out_of_memory
    from physnetjax.md.potential import NeighborPair

    model = PhysNet(features=4, max_degree=0, num_iterations=1, num_basis_functions=3, cutoff=3.0,
                    max_atomic_number=6, n_res=1)
    nbrs = NeighborPair(edges=SimpleNamespace(capacity=40),
                        pairs=None if pairs is None else SimpleNamespace(capacity=pairs),
                        triplets=None if triplets is None else SimpleNamespace(capacity=triplets))
    message = str(md_out_of_memory(model, 7, nbrs, OutOfMemoryError("too large"), "starting MD of"))
    assert "starting MD of 7 atoms, 40 neighbor pairs (cutoff 3 Å)" in message
    assert ("60 pairs of the long-range terms" in message) == (pairs is not None)
    assert ("500 D3 three-body triangles" in message) == (triplets is not None)
