"""Check 2, periodic cells: the invariances of a crystal (a cell periodic along x, y and z) with its images.

With E (eV), F = −∂E/∂R (n, 3) eV/Å and σ = (1/V) ∂E/∂ε (3, 3) eV/Å³ of the crystal with positions R
(n, 3) Å and cell vectors h (3, 3) Å as rows (volume V = |det h|), evaluated on the check's own lists
(:class:`~physnetjax.check.evaluate.Evaluator`), a physical model has

* ``invariance.net_force``: Σ_i F_i = 0 (E is invariant under a rigid translation), value |Σ F| eV/Å;
* ``invariance.rotation`` / ``reflection``: the crystal R Qᵀ in the cell h Qᵀ, for a random proper /
  improper orthogonal Q, has E, F Qᵀ and Q σ Qᵀ;
* ``invariance.translation``: R + t, t = :data:`TRANSLATION_FRACTIONS` · h (a third to two thirds of
  each cell vector), given to the builder unwrapped (atoms outside the cell), has E, F and σ;
* ``invariance.wrapping``: every atom moved by its own random lattice vector m_i · h (m_i ∈ {−2..2}³,
  seed ``seed + 4``), the unwrapped coordinates of MD, has E, F and σ;
* ``invariance.permutation``: the atoms in a random order π have E, F_π and σ;
* ``invariance.padding``: the host-built batch padded with ghost atoms (at least 3), extra edge (and
  pair) slots and an empty cell slot has E, F and σ;
* ``invariance.batch``: the crystal as the 2nd member of a batch after its rotated copy has E, F and σ;
* ``invariance.supercell``: the supercell of cell vectors :data:`SUPERCELL` · h (sheared, twice the
  volume: each atom and its image by h_c, :func:`supercell`) has the energy 2E, the forces F of each
  atom at both of its copies and the stress σ. It fails where the model or the lists count an image
  pair wrongly (a missing or doubled image, a shift of the wrong cell), a volume that is not the
  cell's, or anything that depends on the choice of the cell rather than on the crystal.

Every comparison but the first evaluates the other crystal with the production host builder
(:func:`~physnetjax.neighbors.batch_periodic`, lists at the model's cutoffs exactly, atoms wrapped by
it), so it also compares those lists with the check's; the last three share one padded shape (each is padded, and they
compile once). The compared value is max(|ΔE| eV, max_ia
|ΔF_ia| eV/Å, V max_ab |Δσ_ab| eV): the stress enters as the change of the cell's virial −Vσ, in eV
like the energy (V |Δσ| = 1e-6 eV is 3e-9 GPa in a 50 Å³ cell); the message gives |Δσ| in GPa.
A torque Σ_i r_i × F_i is no invariant of a crystal (turning the atoms without the cell strains it),
so it is not checked (the report says so, :data:`NOT_APPLICABLE`).
"""

from __future__ import annotations

import numpy as np

from physnetjax.check.evaluate import Evaluator, Structure
from physnetjax.check.invariance import GHOST_ATOMS, random_orthogonal
from physnetjax.check.report import CheckResult
from physnetjax.check.settings import CheckSettings, Thresholds
from physnetjax.neighbors.periodic import lattice_images
from physnetjax.units import GPA

GROUP = "invariance"
TRANSLATION_FRACTIONS = np.array([0.37, -0.61, 0.43])
"""Fractions of the cell vectors by which the translation check shifts the crystal."""
SUPERCELL = np.array([[1, 1, 0], [0, 1, 0], [0, 0, 2]])
"""Integer matrix M of the supercell check: cell vectors M h (h_a + h_b, h_b, 2 h_c; det M = 2)."""
NOT_APPLICABLE = {"invariance.torque": "no invariant of a crystal: turning its atoms without its cell strains it"}
"""Rows of the molecule checks that a periodic cell does not get, with the reason (shown in the report)."""


def supercell(structure: Structure, matrix: np.ndarray) -> tuple[Structure, np.ndarray]:
    """The periodic ``structure`` repeated into the cell of vectors ``matrix`` · h (rows), and the index of each of
    its atoms in ``structure``.

    The lattice points n h (n integer) inside the supercell are those with fractional coordinates n M⁻¹ in [0, 1)³;
    there are |det M|. Atom k·n_atoms + i is atom i moved by the k-th of them (positions (|det M| n, 3) Å, not wrapped).

    Raises:
      ValueError: a matrix that is not integer of shape (3, 3) with det M ≠ 0.
    """
    matrix = np.asarray(matrix)
    if matrix.shape != (3, 3) or not np.issubdtype(matrix.dtype, np.integer) or round(np.linalg.det(matrix)) == 0:
        raise ValueError(f"a supercell needs an integer (3, 3) matrix with a non-zero determinant, received {matrix!r}")
    corners = np.array([[a, b, c] for a in (0, 1) for b in (0, 1) for c in (0, 1)]) @ matrix
    ranges = [np.arange(corners[:, k].min(), corners[:, k].max() + 1) for k in range(3)]
    points = np.stack(np.meshgrid(*ranges, indexing="ij"), axis=-1).reshape(-1, 3)
    fractions = points @ np.linalg.inv(matrix)
    inside = np.all((fractions > -1e-9) & (fractions < 1.0 - 1e-9), axis=1)
    translations = points[inside] @ structure.cell
    n = structure.num_atoms
    positions = (structure.positions[None] + translations[:, None]).reshape(-1, 3)
    origin = np.tile(np.arange(n), len(translations))
    return Structure(structure.atomic_numbers[origin], positions, structure.total_charge * len(translations),
                     f"{structure.name} supercell {matrix.tolist()}", matrix @ structure.cell), origin


def _difference(name: str, index: int, volume: float, reference: tuple, other: tuple, thresholds: Thresholds,
                what: str) -> CheckResult:
    """Result comparing (E, F, σ) triples: value max(|ΔE|, max|ΔF|, V max|Δσ|) (module docstring)."""
    de = abs(float(other[0]) - float(reference[0]))
    df = float(np.max(np.abs(np.asarray(other[1]) - np.asarray(reference[1]))))
    ds = float(np.max(np.abs(np.asarray(other[2]) - np.asarray(reference[2]))))
    details = {"energy_difference_eV": de, "max_force_difference_eV_per_A": df,
               "max_stress_difference_GPa": ds / GPA, "virial_difference_eV": volume * ds}
    message = f"{what}: |ΔE| {de:.1e} eV, max |ΔF| {df:.1e} eV/Å, max |Δσ| {ds / GPA:.1e} GPa"
    return CheckResult.measured(f"invariance.{name}", GROUP, index, max(de, df, volume * ds), "eV | eV/Å",
                                thresholds.invariance, message, details)


def check_cell_invariance(evaluator: Evaluator, index: int, settings: CheckSettings, thresholds: Thresholds) -> list:
    """The results listed in the module docstring, for one periodic cell."""
    s = evaluator.structure
    z, r, h, q, n, volume = s.atomic_numbers, np.asarray(s.positions, np.float64), s.cell, s.total_charge, \
        s.num_atoms, s.volume
    rng = np.random.default_rng(settings.seed)
    rotation = random_orthogonal(rng, proper=True)
    reflection = random_orthogonal(rng, proper=False)
    perm = rng.permutation(n)
    energies, f0 = evaluator.evaluate_one(r)
    reference = (energies[0], f0, evaluator.stress(r))

    def host_batch(structures, **padding):
        zs, rs, cells = zip(*structures)
        return evaluator.host_batch(list(zs), list(rs), [q] * len(zs), cells=list(cells), **padding)

    def host(structures, **padding) -> dict:
        return evaluator.apply(host_batch(structures, **padding))

    def first(out, atoms=slice(0, n), member=0) -> tuple:
        return out["energy"][member], out["forces"][atoms], out["stress"][member]

    def compared(name, other, expected, what):
        return _difference(name, index, volume, expected, other, thresholds, what)

    net = float(np.linalg.norm(f0.sum(axis=0)))
    results = [CheckResult.measured("invariance.net_force", GROUP, index, net, "eV/Å", thresholds.invariance,
                                    f"|Σ F| = {net:.1e} eV/Å", {"net_force": f0.sum(axis=0)})]
    for name, q_matrix in (("rotation", rotation), ("reflection", reflection)):
        expected = (reference[0], f0 @ q_matrix.T, q_matrix @ reference[2] @ q_matrix.T)
        results.append(compared(name, first(host([(z, r @ q_matrix.T, h @ q_matrix.T)])), expected,
                                f"random {name} of the cell and the atoms"))
    shifted = r + TRANSLATION_FRACTIONS @ h
    leaving = int(np.any(lattice_images(shifted, h) != 0, axis=1).sum())
    results.append(compared("translation", first(host([(z, shifted, h)])), reference,
                            f"shift by {np.round(TRANSLATION_FRACTIONS @ h, 3).tolist()} Å, {leaving} of {n} atoms "
                            "outside the cell, given unwrapped"))
    images = np.random.default_rng(settings.seed + 4).integers(-2, 3, size=(n, 3))
    results.append(compared("wrapping", first(host([(z, r + images @ h, h)])), reference,
                            "every atom moved by a random lattice vector (unwrapped coordinates)"))
    results.append(compared("permutation", first(host([(z[perm], r[perm], h)])),
                            (reference[0], f0[perm], reference[2]), "random permutation of the atoms"))

    bigger, origin = supercell(s, SUPERCELL)
    copies = len(origin) // n
    padding, batch, cells = ([(z, r, h)], [(z, r @ rotation.T, h @ rotation.T), (z, r, h)],
                             [(bigger.atomic_numbers, bigger.positions, bigger.cell)])
    shape = _common_padding([host_batch(part) for part in (padding, batch, cells)])
    results.append(compared("padding", first(host(padding, **shape)), reference,
                            f"{shape['num_atoms'] - n} ghost atoms, padded edges, empty cell slot"))
    results.append(compared("batch", first(host(batch, **shape), slice(n, 2 * n), 1), reference,
                            "second in a batch, after a rotated copy"))
    out = host(cells, **shape)
    results.append(compared("supercell", (out["energy"][0] / copies, out["forces"][:len(origin)], out["stress"][0]),
                            (reference[0], f0[origin], reference[2]),
                            f"supercell {SUPERCELL.tolist()} · cell ({copies} cells, sheared): E per cell, each atom's "
                            "forces at every copy, σ"))
    return results


def _common_padding(batches) -> dict:
    """Padded sizes that hold every one of ``batches`` with at least :data:`GHOST_ATOMS` ghost atoms, 7 spare edge
    (and pair) slots and 2 cell slots: the padding, batch and supercell rows share one shape (one compilation), and
    each of them is padded."""
    pairs = [b.pair_dst.shape[0] for b in batches if b.pair_dst is not None]
    return {"num_atoms": max(b.num_atoms for b in batches) + GHOST_ATOMS,
            "num_edges": max(b.num_edges for b in batches) + 7,
            "num_pairs": max(pairs) + 7 if pairs else None, "num_molecules": 2}
