"""Check 2: conservation laws and invariances of an isolated molecule (a crystal's: :mod:`~physnetjax.check.cell_invariance`).

With E and F = −∂E/∂R at positions R (n, 3), a physical isolated-molecule model has

* ``invariance.net_force``: Σ_i F_i = 0 (translation invariance of E), value |Σ F| eV/Å;
* ``invariance.torque``: Σ_i (r_i − r̄) × F_i = 0 (rotation invariance), value |τ| eV;
* ``invariance.rotation`` / ``reflection``: E(R Qᵀ) = E(R), F(R Qᵀ) = F(R) Qᵀ for a
  random proper / improper orthogonal Q;
* ``invariance.translation``: E(R + t) = E(R), F unchanged, t = (7.3, −4.1, 12.9) Å;
* ``invariance.permutation``: E(R_π) = E(R), F_π(R_π) = F(R)_π for a random π;
* ``invariance.padding``: the host-built batch padded with 3 ghost atoms (Z = 0 at the
  origin), extra edge slots and an empty molecule slot gives the same E and F on
  the real atoms;
* ``invariance.batch``: the molecule as the 2nd member of a batch, overlapping a
  rotated copy of itself (only the graph separates them), gives the same E and F.

The compared value is max(|ΔE| in eV, max_ia |ΔF_ia| in eV/Å).
"""

from __future__ import annotations

import numpy as np

from physnetjax.check.evaluate import Evaluator, Structure
from physnetjax.check.report import CheckResult
from physnetjax.check.settings import CheckSettings, Thresholds

GROUP = "invariance"
TRANSLATION = np.array([7.3, -4.1, 12.9])
"""Å: translation applied by the translation check."""
GHOST_ATOMS = 3
"""Padding atoms added by the padding check."""


def random_orthogonal(rng: np.random.Generator, proper: bool) -> np.ndarray:
    """A random 3×3 orthogonal matrix with determinant +1 (``proper``) or −1."""
    q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    if (np.linalg.det(q) > 0) != proper:
        q[:, 0] = -q[:, 0]
    return q


def _difference(name: str, index: int, reference: tuple, other: tuple, thresholds: Thresholds,
                what: str) -> CheckResult:
    """Result comparing (E, F) pairs: value max(|ΔE|, max|ΔF|)."""
    de = abs(float(other[0]) - float(reference[0]))
    df = float(np.max(np.abs(np.asarray(other[1]) - np.asarray(reference[1]))))
    details = {"energy_difference_eV": de, "max_force_difference_eV_per_A": df}
    message = f"{what}: |ΔE| {de:.1e} eV, max |ΔF| {df:.1e} eV/Å"
    return CheckResult.measured(f"invariance.{name}", GROUP, index, max(de, df), "eV | eV/Å",
                                thresholds.invariance, message, details)


def check_invariance(evaluator: Evaluator, index: int, settings: CheckSettings, thresholds: Thresholds) -> list:
    """The results listed in the module docstring, for one structure."""
    s = evaluator.structure
    z, r, n = s.atomic_numbers, np.asarray(s.positions, np.float64), s.num_atoms
    rng = np.random.default_rng(settings.seed)
    rotation = random_orthogonal(rng, proper=True)
    reflection = random_orthogonal(rng, proper=False)
    perm = rng.permutation(n)
    geometries = np.stack([r, r @ rotation.T, r @ reflection.T, r + TRANSLATION])
    energies, forces = evaluator.evaluate(geometries)
    e0, f0 = energies[0, 0], forces[0]
    results = []

    net = float(np.linalg.norm(f0.sum(axis=0)))
    results.append(CheckResult.measured("invariance.net_force", GROUP, index, net, "eV/Å", thresholds.invariance,
                                        f"|Σ F| = {net:.1e} eV/Å", {"net_force": f0.sum(axis=0)}))
    torque_vector = np.cross(r - r.mean(axis=0), f0).sum(axis=0)
    torque = float(np.linalg.norm(torque_vector))
    results.append(CheckResult.measured("invariance.torque", GROUP, index, torque, "eV", thresholds.invariance,
                                        f"|Σ (r − r̄) × F| = {torque:.1e} eV", {"torque": torque_vector}))
    results.append(_difference("rotation", index, (e0, f0 @ rotation.T), (energies[1, 0], forces[1]),
                               thresholds, "random rotation"))
    results.append(_difference("reflection", index, (e0, f0 @ reflection.T), (energies[2, 0], forces[2]),
                               thresholds, "random reflection"))
    results.append(_difference("translation", index, (e0, f0), (energies[3, 0], forces[3]), thresholds,
                               f"shift by {TRANSLATION.tolist()} Å"))

    permuted = Evaluator(evaluator.model, evaluator.params, Structure(z[perm], r[perm], s.total_charge, s.name),
                         evaluator.fn)
    pe, pf = permuted.evaluate(r[perm][None])
    results.append(_difference("permutation", index, (e0, f0[perm]), (pe[0, 0], pf[0]), thresholds,
                               "random permutation of the atoms"))

    padded = evaluator.host_batch([z], [r], [s.total_charge], num_atoms=n + GHOST_ATOMS,
                                  num_edges=n * (n - 1) + 7, num_pairs=n * (n - 1) + 7, num_molecules=2)
    out = evaluator.apply(padded)
    results.append(_difference("padding", index, (e0, f0), (out["energy"][0], out["forces"][:n]), thresholds,
                               f"{GHOST_ATOMS} ghost atoms at the origin, padded edges, empty molecule slot"))

    other = r @ rotation.T + (r.mean(axis=0) - (r @ rotation.T).mean(axis=0))
    together = evaluator.host_batch([z, z], [other, r], [s.total_charge, s.total_charge])
    out = evaluator.apply(together)
    results.append(_difference("batch", index, (e0, f0), (out["energy"][1], out["forces"][n:2 * n]), thresholds,
                               "second in a batch, overlapping a rotated copy"))
    return results
