"""Pair-list sanity checks: half lists and truncated bare-Coulomb lists are refused outside jit."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from physnetjax import EF, init_params
from physnetjax.neighbors import assemble_batch, batch_molecules, molecule_pairs
from physnetjax.neighbors.checks import check_all_pairs, check_full_list

TRIANGLE = np.array([[0.0, 0.0, 0.0], [0.96, 0.0, 0.0], [-0.24, 0.93, 0.0]])


def test_full_lists_pass_and_half_lists_are_named():
    dst, src = molecule_pairs(TRIANGLE, None)
    check_full_list(dst, src)
    half = dst < src
    with pytest.raises(ValueError, match=r"not a full directed list: pair 0 <- 1 is listed but 1 <- 0 is not"):
        check_full_list(dst[half], src[half])
    padded_dst, padded_src = np.append(dst[half], [2, 2]), np.append(src[half], [0, 1])
    with pytest.raises(ValueError, match="half list"):
        check_full_list(padded_dst, padded_src, np.array([True] * 3 + [False] * 2))
    mask = np.ones(len(dst) + 1, bool)
    mask[-1] = False
    check_full_list(np.append(dst, 0), np.append(src, 2), mask)  # a padded extra pair does not count
    with pytest.raises(ValueError, match="listed more often"):
        check_full_list(np.append(dst, 0), np.append(src, 1))


def test_periodic_lists_compare_images():
    """(i ← j, n) needs (j ← i, −n); self-images (i ← i, n) need (i ← i, −n)."""
    cell = np.array([[3.0, 0.0, 0.0], [0.5, 3.0, 0.0], [0.0, 0.0, 4.0]])
    images = np.array([[1, 0, 0], [-1, 0, 0], [0, 1, 0], [0, -1, 0]])
    shifts = images @ cell + 1e-7  # float noise must not matter when images are compared
    check_full_list([0, 0, 0, 0], [0, 0, 0, 0], shifts=shifts, cells=cell)
    check_full_list([0, 1], [1, 0], shifts=np.array([[1, 0, 0], [-1, 0, 0]]) @ cell, cells=cell)
    with pytest.raises(ValueError, match="0 <- 1 is listed but 1 <- 0 is not"):
        check_full_list([0, 1], [1, 0], shifts=np.array([[1, 0, 0], [1, 0, 0]]) @ cell, cells=cell)
    with pytest.raises(ValueError, match="0 <- 0"):
        check_full_list([0, 0], [0, 0], shifts=images[[0, 2]] @ cell, cells=cell)


@pytest.mark.parametrize("unit", [1.0, 3e4])  # 3e4 Å shifts: 2·3e8 values per column, beyond one int64 key
def test_the_full_list_check_agrees_with_counting_every_pair_and_its_reverse(unit):
    """Random lists (pairs repeated, reversed or not, shifts without a cell in units of ``unit`` Å) pass exactly when
    a brute-force count finds each (i, j, s) as often as (j, i, −s)."""
    from collections import Counter

    rng = np.random.default_rng(7)
    outcomes = set()
    for _ in range(200):
        count = int(rng.integers(1, 6))
        dst, src = rng.integers(0, 4, count), rng.integers(0, 4, count)
        shifts = rng.integers(-1, 2, (count, 3)) * unit
        if rng.random() < 0.7:  # mostly lists with their reverses, some of them spoiled
            dst, src, shifts = np.concatenate([dst, src]), np.concatenate([src, dst]), np.concatenate([shifts, -shifts])
            if rng.random() < 0.5:
                shifts[int(rng.integers(len(shifts)))] += unit
        forward = Counter(zip(dst.tolist(), src.tolist(), map(tuple, shifts.tolist())))
        backward = Counter(zip(src.tolist(), dst.tolist(), map(tuple, (-shifts).tolist())))
        full = forward == backward
        outcomes.add(full)
        if full:
            check_full_list(dst, src, shifts=shifts)
        else:
            with pytest.raises(ValueError, match="not a full directed list"):
                check_full_list(dst, src, shifts=shifts)
    assert outcomes == {True, False}


def test_the_one_key_per_row_comparison_agrees_with_comparing_the_sorted_rows():
    """The full-list check compares a list with its reverse through one int64 key per row (a mixed radix over the
    columns' common ranges). Against sorted tuples: rows with negative image columns, the same rows shuffled (equal)
    and with one row moved by +1 / −1 in two neighbouring columns (unequal: a radix narrower than a column's range
    maps both to one key), or by a value outside the other's range."""
    from physnetjax.neighbors.checks import _same_rows

    rng = np.random.default_rng(3)
    for _ in range(300):
        rows = int(rng.integers(1, 8))
        a = np.concatenate([rng.integers(0, 5, (rows, 2)), rng.integers(-2, 3, (rows, 3))], axis=1)
        b = a[rng.permutation(rows)]
        assert _same_rows(a, b) and _same_rows(b, a)
        moved = b.copy()
        k, column = int(rng.integers(rows)), int(rng.integers(4))
        moved[k, column] += 1
        moved[k, column + 1] -= 1
        far = b.copy()
        far[k, int(rng.integers(5))] -= 7
        for other in (moved, far):
            expected = sorted(map(tuple, a.tolist())) == sorted(map(tuple, other.tolist()))
            assert _same_rows(a, other) == expected and _same_rows(other, a) == expected


def test_all_pairs_check_counts_each_molecule():
    segments, atoms = np.array([0, 0, 0, 1, 1, 1]), np.array([True] * 5 + [False])
    dst, src = molecule_pairs(TRIANGLE, None)
    full = (np.concatenate([dst, [3, 4]]), np.concatenate([src, [4, 3]]))
    check_all_pairs(*full, None, segments, atoms, 2)
    with pytest.raises(ValueError, match=r"molecule 0 holds 4 of its 6 ordered pairs \(3 atoms\)"):
        check_all_pairs(full[0][2:], full[1][2:], None, segments, atoms, 2)
    with pytest.raises(ValueError, match="molecule 1 holds 0 of its 2"):
        check_all_pairs(*full, np.arange(8) < 6, segments, atoms, 2)


def test_host_builder_refuses_a_half_list():
    dst, src = molecule_pairs(TRIANGLE, None)
    half = dst < src
    with pytest.raises(ValueError, match="edge list is not a full directed list"):
        assemble_batch([np.array([8, 1, 1])], [TRIANGLE], (dst[half], src[half], None), None, [0.0], None)
    with pytest.raises(ValueError, match="pair list is not a full directed list"):
        assemble_batch([np.array([8, 1, 1])], [TRIANGLE], (dst, src, None), (dst[half], src[half], None),
                       [0.0], None)


@pytest.fixture(scope="module")
def legacy_model():
    """A tiny legacy-style EF with bare Coulomb (charges=True, no long-range cutoff)."""
    model = EF(features=8, max_degree=0, num_iterations=1, num_basis_functions=4, cutoff=3.0, max_atomic_number=8,
               charges=True, zbl=True, n_res=1)
    return model, init_params(model, 0)


def chain(num_atoms, spacing=1.4):
    positions = np.zeros((num_atoms, 3))
    positions[:, 0] = spacing * np.arange(num_atoms)
    return np.full(num_atoms, 6, dtype=np.int32), positions


def test_legacy_entry_point_refuses_a_half_list(legacy_model):
    model, params = legacy_model
    z, r = chain(3)
    dst, src = molecule_pairs(r, None)
    half = dst < src
    with pytest.raises(ValueError, match=r"edge list \(dst_idx, src_idx\) is not a full directed list"):
        model.apply(params, jnp.asarray(z), jnp.asarray(r), jnp.asarray(dst[half]), jnp.asarray(src[half]))


def test_bare_coulomb_refuses_a_cutoff_limited_pair_list(legacy_model):
    """A 4-atom chain 4.2 Å long with a 3 Å cutoff: the edge list lacks the end-to-end pairs."""
    model, params = legacy_model
    z, r = chain(4)
    dst, src = molecule_pairs(r, model.cutoff)
    with pytest.raises(ValueError, match="molecule 0 holds 10 of its 12 ordered pairs"):
        model.apply(params, jnp.asarray(z), jnp.asarray(r), jnp.asarray(dst), jnp.asarray(src))
    batch = batch_molecules([z], [r], model.cutoff, pair_cutoff=model.cutoff, dtype=np.float64)
    with pytest.raises(ValueError, match="bare Coulomb"):
        model.apply(params, batch.atomic_numbers, batch.positions, batch.dst_idx, batch.src_idx,
                    batch.atom_segments, 1, batch.edge_mask, batch.atom_mask)


def test_bare_coulomb_in_a_periodic_cell_is_refused(legacy_model):
    model, params = legacy_model
    z, r = chain(2)
    dst, src = molecule_pairs(r, None)
    with pytest.raises(ValueError, match="not defined in a periodic cell"):
        model.apply(params, jnp.asarray(z), jnp.asarray(r), jnp.asarray(dst), jnp.asarray(src),
                    cells=jnp.eye(3)[None] * 10.0)


def test_checks_are_skipped_under_jit(legacy_model):
    """Inside jit nothing can raise: the checks must not touch traced values (no ConcretizationError)."""
    model, params = legacy_model
    z, r = chain(2)
    out = jax.jit(lambda p, d, s: model.apply(p, jnp.asarray(z), jnp.asarray(r), d, s))(
        params, jnp.array([0]), jnp.array([1]))
    assert np.isfinite(float(out["energy"][0]))
