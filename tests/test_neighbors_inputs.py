"""The neighbor-list builders refuse input they cannot list, by name (PhysNetInputError), instead of a list that is
silently empty or wrong (a NaN cutoff: no edges, a model without message passing) or a raw NumPy/JAX traceback."""

import re

import jax.numpy as jnp
import numpy as np
import pytest

from physnetjax.errors import PhysNetInputError
from physnetjax.neighbors import (
    allocate_triplets,
    batch_molecules,
    batch_periodic,
    molecule_pairs,
    neighbor_list,
    periodic_pairs,
)

RNG = np.random.default_rng(0)
POSITIONS = RNG.uniform(0, 6, (5, 3))
Z = np.ones(5, int)
CELL = np.eye(3) * 6.0
NAN_ROW = np.where(np.arange(5)[:, None] == 2, np.nan, POSITIONS)
ALL_PAIRS = neighbor_list(None, method="dense").allocate(POSITIONS)
DEPENDENT = np.array([[6.0, 0.0, 0.0], [0.0, 6.0, 0.0], [6.0, 0.0, 0.0]])

REFUSED = [
    ("batch_molecules cutoff nan", lambda: batch_molecules([Z], [POSITIONS], float("nan")),
     "cutoff must be > 0 Å, received nan"),
    ("batch_molecules cutoff -1", lambda: batch_molecules([Z], [POSITIONS], -1.0),
     "cutoff must be > 0 Å, received -1.0"),
    ("batch_molecules cutoff 0", lambda: batch_molecules([Z], [POSITIONS], 0.0),
     "cutoff must be > 0 Å, received 0.0"),
    ("batch_molecules pair_cutoff nan", lambda: batch_molecules([Z], [POSITIONS], 3.0, pair_cutoff=float("nan")),
     "pair_cutoff must be >= 0 Å, received nan"),
    ("batch_periodic cutoff nan", lambda: batch_periodic([Z], [POSITIONS], [CELL], float("nan")),
     "cutoff must be finite and > 0 Å, received nan"),
    ("batch_periodic pair_cutoff nan",
     lambda: batch_periodic([Z], [POSITIONS], [CELL], 3.0, pair_cutoff=float("nan")),
     "pair_cutoff must be finite and >= 0 Å, received nan"),
    ("molecule_pairs NaN positions", lambda: molecule_pairs(NAN_ROW, 3.0),
     "positions contain NaN or Inf at atom(s) 2"),
    ("molecule_pairs (5, 2) positions", lambda: molecule_pairs(POSITIONS[:, :2], 3.0),
     "positions must have shape (n, 3), received (5, 2)"),
    ("molecule_pairs cutoff nan", lambda: molecule_pairs(POSITIONS, float("nan")),
     "cutoff must be > 0 Å, received nan"),
    ("neighbor_list cutoff inf", lambda: neighbor_list(float("inf"), cell=CELL),
     "cutoff must be finite and > 0 Å, received inf"),
    ("neighbor_list skin inf", lambda: neighbor_list(3.0, skin=float("inf"), cell=CELL),
     "skin must be finite and >= 0 Å, received inf"),
    ("neighbor_list capacity_multiplier inf", lambda: neighbor_list(3.0, cell=CELL, capacity_multiplier=float("inf")),
     "capacity_multiplier must be finite and >= 1, received inf"),
    ("neighbor_list cutoff str", lambda: neighbor_list("3.0"), "cutoff must be a number of Å, received '3.0' (str)"),
    ("neighbor_list method", lambda: neighbor_list(3.0, method="verlet"), "method must be one of"),
    ("periodic_pairs cutoff None", lambda: periodic_pairs(POSITIONS, CELL, None),
     "cutoff must be a number of Å, received None (NoneType)"),
    ("periodic_pairs beyond the coordinate bound", lambda: periodic_pairs(POSITIONS + 1e8 * CELL.sum(0), CELL, 3.0),
     "positions beyond ±10000 Å at atom(s) 0, 1, 2, 3, 4"),
    ("the coordinate bound says why", lambda: periodic_pairs(POSITIONS + 1e8 * CELL.sum(0), CELL, 3.0),
     "float32 resolves coordinates only to ~1e-3 Å"),
    ("allocate float32 at 1e12 Å",
     lambda: neighbor_list(3.0).allocate((POSITIONS + 1e12).astype(np.float32)),
     "positions beyond ±10000 Å at atom(s) 0, 1, 2, 3, 4"),
    ("batch_periodic dependent cell", lambda: batch_periodic([Z], [POSITIONS], [DEPENDENT], 3.0),
     "structure 0: pbc=[True, True, True] but the cell is zero, flat or degenerate"),
    ("batch_periodic cell (2, 3)", lambda: batch_periodic([Z], [POSITIONS], [CELL[:2]], 3.0),
     "structure 0: cell must be a real (3, 3) array of cell vectors (rows, Å), received shape (2, 3)"),
    ("batch_periodic cell (3,)", lambda: batch_periodic([Z], [POSITIONS], [np.ones(3) * 6.0], 3.0),
     "structure 0: cell must be a real (3, 3) array of cell vectors (rows, Å), received shape (3,)"),
    ("batch_periodic NaN cell", lambda: batch_periodic([Z], [POSITIONS], [np.full((3, 3), np.nan)], 3.0),
     "structure 0: cell contains NaN or Inf"),
    ("allocate_triplets radius nan", lambda: allocate_triplets(ALL_PAIRS, POSITIONS, float("nan")),
     "radius must be > 0 Å, received nan"),
    ("allocate_triplets radius 0", lambda: allocate_triplets(ALL_PAIRS, POSITIONS, 0.0),
     "radius must be > 0 Å, received 0.0"),
    ("allocate_triplets radius None", lambda: allocate_triplets(ALL_PAIRS, POSITIONS, None),
     "radius must be a number of Å, received None (NoneType)"),
    ("allocate_triplets capacity_multiplier 0.5",
     lambda: allocate_triplets(ALL_PAIRS, POSITIONS, 3.0, capacity_multiplier=0.5),
     "capacity_multiplier must be finite and >= 1, received 0.5"),
    ("allocate_triplets capacity_multiplier inf",
     lambda: allocate_triplets(ALL_PAIRS, POSITIONS, 3.0, capacity_multiplier=float("inf")),
     "capacity_multiplier must be finite and >= 1, received inf"),
]


@pytest.mark.parametrize("call,message", [case[1:] for case in REFUSED], ids=[case[0] for case in REFUSED])
def test_bad_input_is_refused_by_name(call, message):
    with pytest.raises(PhysNetInputError, match=re.escape(message)):
        call()


def test_update_refuses_positions_of_another_system():
    """Another atom count gave a JAX broadcasting TypeError, float32 positions for a float64 list a cond TypeError."""
    fns = neighbor_list(3.0, cell=CELL)
    nbrs = fns.allocate(POSITIONS)
    with pytest.raises(PhysNetInputError, match=re.escape("positions have shape (6, 3) and dtype float64, but the list "
                                                          "was allocated for shape (5, 3) and dtype float64")):
        fns.update(jnp.asarray(np.vstack([POSITIONS, POSITIONS[:1] + 1.0])), nbrs)
    with pytest.raises(PhysNetInputError, match="dtype float32, but the list was allocated for shape .5, 3. and "
                                                "dtype float64"):
        fns.update(jnp.asarray(POSITIONS, jnp.float32), nbrs)


def test_unwrapped_positions_within_the_bound_give_the_wrapped_pairs():
    """periodic_pairs promises unwrapped positions work: within ±MAX_ABS_COORDINATE the pairs are those of the
    wrapped structure, the shifts moved by the lattice translations (float64 brute force over images)."""
    cell = np.array([[6.0, 0.0, 0.0], [1.0, 6.0, 0.0], [0.5, -0.7, 6.0]])
    wrapped = RNG.uniform(0, 1, (6, 3)) @ cell
    translation = np.array([[400, -300, 350]] * 6) + RNG.integers(-3, 4, (6, 3))
    unwrapped = wrapped + translation @ cell
    dst, src, shifts = periodic_pairs(unwrapped, cell, 3.0)
    vectors = unwrapped[src] - unwrapped[dst] + shifts
    expected = set()
    for n in np.ndindex(5, 5, 5):
        n = np.asarray(n) - 2
        d = np.linalg.norm(wrapped[None] - wrapped[:, None] + n @ cell, axis=-1)
        expected |= {(i, j, tuple(n + translation[i] - translation[j])) for i, j in zip(*np.nonzero(d < 3.0))
                     if i != j or n.any()}
    images = np.rint(shifts @ np.linalg.inv(cell)).astype(int)
    assert {(int(i), int(j), tuple(m)) for i, j, m in zip(dst, src, images)} == expected
    assert np.all(np.linalg.norm(vectors, axis=-1) < 3.0)


def test_an_infinite_cutoff_lists_every_pair_of_a_molecule():
    """+inf is the cutoff of all pairs of an isolated molecule (check and the migration report build their batches
    so); only a periodic list needs a finite one."""
    n = len(Z)
    everything = {(i, j) for i in range(n) for j in range(n) if i != j}
    dst, src = molecule_pairs(POSITIONS, float("inf"))
    assert set(zip(dst.tolist(), src.tolist())) == everything
    batch = batch_molecules([Z], [POSITIONS], float("inf"), pair_cutoff=float("inf"))
    real = np.asarray(batch.edge_mask, bool)
    listed = set(zip(np.asarray(batch.dst_idx)[real].tolist(), np.asarray(batch.src_idx)[real].tolist()))
    assert listed == everything
