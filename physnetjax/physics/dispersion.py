r"""Grimme's DFT-D3 dispersion with Becke–Johnson (rational) damping, in pure JAX.

Formulas (S. Grimme et al., J. Chem. Phys. 132, 154104 (2010); J. Comput. Chem. 32,
1456 (2011)), evaluated in Bohr and Hartree as the reference defines them; inputs are
Å and results eV (``physnetjax.units.BOHR``, ``HARTREE``).

Coordination number of atom i (sum over the *full* pair list, periodic images included)::

    CN_i = Σ_j s_cn(r_ij) / (1 + exp(−k1 (R_ij / r_ij − 1))),   R_ij = k2 (R_cov,i + R_cov,j)

with k1 = 16, k2 = 4/3 and R_cov the D3 covalent radii. Dispersion coefficient of the
pair from the reference grid (a over the references of Z_i, b over those of Z_j)::

    C6_ij = Σ_ab L_ia L_jb C6^ref(Z_i, Z_j, a, b),
    L_ia  = exp(−k3 (CN_i − CN_a^ref)²) / Σ_a' exp(−k3 (CN_i − CN_a'^ref)²),   k3 = 4

(the Gaussian weight exp(−k3[(CN_i − CN_a)² + (CN_j − CN_b)²]) factorises into L_ia L_jb).
The normalisation is done with the largest weight factored out (a softmax), so when every
weight underflows L tends to the closest reference instead of 0/0 (the PhysNet TF1 code
returned C6 ≈ −1e99 there). Higher order and damping::

    C8_ij = 3 C6_ij Q_i Q_j,   Q_Z = √(½ ⟨r⁴⟩/⟨r²⟩ √Z),
    f_ij  = a1 R0_ij + a2,     R0_ij = √(C8_ij / C6_ij) = √(3 Q_i Q_j),
    E2    = −Σ_{i<j} s(r_ij) [ s6 C6_ij / (r_ij⁶ + f_ij⁶) + s8 C8_ij / (r_ij⁸ + f_ij⁸) ].

Optional Axilrod–Teller–Muto three-body term over triangles (i, j, k), with the
zero-damping function of the original D3 (as s-dftd3 keeps it with BJ damping)::

    E3 = Σ_{i<j<k} s(r_ij) s(r_ik) s(r_jk) s9 √(C6_ij C6_ik C6_jk)
                   (3 cos θ_i cos θ_j cos θ_k + 1) / (r_ij r_ik r_jk)³
                   / (1 + 6 (4/3 · (R0_ij R0_ik R0_jk / (r_ij r_ik r_jk))^(1/3))^(α+2))

with R0 the D3 pair cutoff radii (R0AB) and α = ``alp`` = 14.

Cutoffs: s(r) is 1 up to ``cutoff − switch_width`` and falls to 0 at ``cutoff`` with the
PhysNet C² polynomial; the same switch with ``cn_cutoff`` multiplies each CN count.
``switch_width = 0`` gives the hard cutoffs of the reference dftd3 program (used to
compare with it; a hard cutoff makes the energy jump). The input is a full directed pair
list like every pair term's; each unordered pair is evaluated once, on the half list
:func:`one_direction` selects inside ``jit`` (its CN count goes to both ends), which
halves the per-pair work (the model slices it instead when the host builder stored the
list in halves layout, :mod:`physnetjax.neighbors.halves`). C6 comes from per-atom
projections of the reference grid when a system has more pairs than 104 × its atoms,
else per pair; both are the same sum. Periodic images enter through the pair vectors
(r_src − r_dst + shift), so the stress follows from the strain derivative of the caller.

Derivatives: without ATM the energy is :func:`d3_two_body_energy`, whose JVP is derived
by hand (:func:`_two_body_pass`: ∂E/∂CN per atom, then one per-pair gradient); with ATM
the plain formula (:func:`d3_two_body_autodiff`) is left to automatic differentiation.

Memory: the ATM term evaluates every pair-of-pairs (each triangle once per vertex) with
its intermediates, ~1 kB each in float32 with the gradient (the C6 of three pairs from
their 7×7 reference grids). A periodic box reaches 10⁷–10⁸ of them within 15 Å (8 water
molecules: 2.4e7, 24 GB in one call). Lists longer than :data:`ATM_CHUNK_TRIANGLES` are
summed chunk by chunk (:func:`_sum_over_triangles`): a ``lax.scan`` over a rematerialised
body, whose gradient recomputes each chunk rather than storing it, so memory stays that of
one chunk beside the index list itself (8 bytes per pair-of-pairs); the sum is the same up
to the order of additions. A list of whole chunks is read in place; a shorter last chunk is
padded into a copy of the list (:func:`physnetjax.neighbors.triplets.triplet_slots` sizes
lists to whole chunks).
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import tomllib
from dataclasses import dataclass
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from physnetjax.physics.molecules import sum_per_molecule
from physnetjax.physics.switch import cutoff_polynomial, cutoff_polynomial_slope
from physnetjax.units import BOHR, HARTREE

D3_K1 = 16.0
"""Steepness of the D3 counting function."""
D3_K2 = 4.0 / 3.0
"""Scaling of the covalent radii in the counting function."""
D3_K3 = 4.0
"""Width parameter of the Gaussian CN interpolation."""
D3_MAX_ATOMIC_NUMBER = 103
"""Largest Z with D3 reference data (H–Lr, s-dftd3's reference set)."""

_DATA = Path(__file__).resolve().parent / "d3_data"

ATM_CHUNK_TRIANGLES = 131072
"""Pairs-of-pairs the ATM sums evaluate in one go; longer lists are summed in chunks of this many (~130 MB of
float32 intermediates with the gradient; module docstring, "Memory")."""


@dataclass(frozen=True)
class D3Tables:
    """D3 reference data as NumPy arrays, index = atomic number (0 = padding).

    Fields:
      c6_reference: (104, 104, 7, 7) reference C6 in Eh·a0⁶ (0 for absent references).
      reference_cn: (104, 7) reference coordination numbers.
      reference_mask: (104, 7) bool, which references are weighed (s-dftd3's counts). Z = 0 gets one dummy
        reference (CN 0, C6 0) so that padded atoms have a well-defined weight.
      covalent_radius: (104,) k2 · R_cov in Bohr.
      vdw_radius: (104, 104) pair cutoff radii R0AB in Bohr (three-body damping).
      sqrt_q: (104,) Q_Z = √(½ ⟨r⁴⟩/⟨r²⟩ √Z), so that C8 = 3 C6 Q_i Q_j.
    """

    c6_reference: np.ndarray
    reference_cn: np.ndarray
    reference_mask: np.ndarray
    covalent_radius: np.ndarray
    vdw_radius: np.ndarray
    sqrt_q: np.ndarray


@functools.lru_cache(maxsize=1)
def d3_tables() -> D3Tables:
    """Load the shipped D3 reference data (see ``d3_data/README.md``)."""
    with np.load(_DATA / "d3_reference.npz") as data:
        mask = data["reference_mask"].copy()
        mask[0, 0] = True
        sqrt_z = np.sqrt(np.arange(D3_MAX_ATOMIC_NUMBER + 1, dtype=np.float64))
        return D3Tables(
            c6_reference=data["c6_reference"],
            reference_cn=data["reference_cn"],
            reference_mask=mask,
            covalent_radius=D3_K2 * data["covalent_radius_angstrom"] / BOHR,
            vdw_radius=data["vdw_radius_angstrom"] / BOHR,
            sqrt_q=np.sqrt(0.5 * data["r4_over_r2"] * sqrt_z),
        )


@dataclass(frozen=True)
class D3BJParameters:
    """Rational-damping parameters of one functional: s6, s8, a1, a2 (Bohr), s9, alp."""

    s6: float
    s8: float
    a1: float
    a2: float
    s9: float = 1.0
    alp: float = 14.0


@functools.lru_cache(maxsize=1)
def _parameter_file() -> dict:
    return tomllib.loads((_DATA / "d3_bj_parameters.toml").read_text())


def d3_functionals() -> list[str]:
    """Names of the functionals with D3(BJ) parameters (aliases not included)."""
    return sorted(_parameter_file()["functional"])


def d3_bj_parameters(functional: str) -> D3BJParameters:
    """D3(BJ) parameters of ``functional`` (case-insensitive, surrounding blanks ignored; aliases such as ``pbeh``).

    Raises:
      ValueError: not a string, or an unknown functional (the message names the closest
        known names and lists them all).
    """
    if not isinstance(functional, str):
        raise ValueError(f"the D3(BJ) functional must be a name such as 'pbe0', received {functional!r} "
                         f"({type(functional).__name__})")
    table = _parameter_file()
    name = functional.strip().lower()
    name = table["alias"].get(name, name)
    if name not in table["functional"]:
        close = difflib.get_close_matches(name, list(table["functional"]) + list(table["alias"]), n=3)
        hint = f" (did you mean {' or '.join(repr(c) for c in close)}?)" if close else ""
        raise ValueError(
            f"no D3(BJ) parameters for functional {functional!r}{hint}; known: {', '.join(d3_functionals())}"
        )
    entry = table["functional"][name]
    return D3BJParameters(**{key: float(entry[key]) for key in ("s6", "s8", "a1", "a2", "s9", "alp")})


def dispersion_switch(r, cutoff: float, width: float):
    """s(r) = 1 for r ≤ cutoff − width, φ((r − cutoff + width)/width) above, 0 beyond cutoff.

    φ is the PhysNet C² cutoff polynomial, so s is C² everywhere. ``width = 0`` is a
    hard step (1 for r < cutoff, else 0). ``r`` and ``cutoff`` in the same unit.
    """
    if width <= 0.0:
        return jnp.where(r < cutoff, 1.0, 0.0).astype(r.dtype)
    x = (r - (cutoff - width)) / width
    return jnp.where(x > 0.0, cutoff_polynomial(jnp.maximum(x, 0.0)), 1.0)


def d3_coordination_numbers(z_i, z_j, r_bohr, pair_dst, pair_src, pair_mask, num_atoms: int, switch):
    """CN_i = Σ_j switch_ij / (1 + exp(−k1 (k2(R_i + R_j)/r_ij − 1))) over a *half* pair list.

    Each unordered pair is listed once and its (symmetric) count goes to both ends.

    Args:
      z_i, z_j: (H,) atomic numbers of both ends; r_bohr: (H,) distances in Bohr
      (finite on padded pairs); pair_dst, pair_src: (H,) indices i, j; pair_mask:
      (H,) bool; num_atoms: N (static); switch: (H,) cutoff switch values.

    Returns:
      (N,) coordination numbers (0 for atoms without real pairs).
    """
    radii = jnp.asarray(d3_tables().covalent_radius, dtype=r_bohr.dtype)
    rc = radii[z_i] + radii[z_j]
    count = jax.nn.sigmoid(D3_K1 * (rc / r_bohr - 1.0)) * switch
    count = jnp.where(pair_mask, count, 0.0)
    both_ends = jnp.concatenate([pair_dst, pair_src])
    return jax.ops.segment_sum(jnp.concatenate([count, count]), both_ends, num_segments=num_atoms)


def d3_reference_weights(atomic_numbers, cn):
    r"""L_ia = softmax_a(−k3 (CN_i − CN_a^ref)²) over the references of Z_i, shape (N, 7).

    The largest weight is factored out before exponentiating, so the weights stay
    normalised when every Gaussian underflows and tend to the closest reference
    (for CN above all references: the highest-CN reference, as in s-dftd3).
    """
    tables = d3_tables()
    reference_cn = jnp.asarray(tables.reference_cn, dtype=cn.dtype)[atomic_numbers]
    present = jnp.asarray(tables.reference_mask)[atomic_numbers]
    logits = jnp.where(present, -D3_K3 * (cn[:, None] - reference_cn) ** 2, -jnp.inf)
    return jax.nn.softmax(logits, axis=-1, where=present)


def d3_pair_c6(z_i, z_j, weights_i, weights_j):
    """C6_ij = Σ_ab L_ia L_jb C6^ref(Z_i, Z_j, a, b) in Eh·a0⁶, shape (P,).

    Args:
      z_i, z_j: (P,) atomic numbers; weights_i, weights_j: (P, 7) reference weights.
    """
    c6_reference = jnp.asarray(d3_tables().c6_reference, dtype=weights_i.dtype)
    grid = c6_reference[z_i, z_j]
    return jnp.einsum("pa,pab,pb->p", weights_i, grid, weights_j)


def d3_atom_pair_c6(atomic_numbers, weights, pair_dst, pair_src):
    """C6 of the pairs (i = dst, j = src) like :func:`d3_pair_c6`, from per-atom projections; (P,).

    Same sum, ordered as C6_ij = Σ_a L_ia U_j(Z_i, a) with U_j(e, a) = Σ_b C6^ref(e, Z_j, a, b) L_jb
    computed once per atom for every element e: O(N · 104 · 49) + O(P · 7) work instead of
    O(P · 49), the cheaper choice for dense systems (many pairs per atom).

    Args:
      atomic_numbers: (N,); weights: (N, 7) reference weights; pair_dst, pair_src: (P,).
    """
    c6_reference = jnp.asarray(d3_tables().c6_reference, dtype=weights.dtype)
    projected = jnp.einsum("enab,nb->nea", c6_reference[:, atomic_numbers], weights)
    return jnp.einsum("pa,pa->p", weights[pair_dst], projected[pair_src, atomic_numbers[pair_dst]])


def one_direction(pair_dst, pair_src, pair_offsets, pair_mask):
    """Indices (H,) and mask (H,) of each unordered pair of a full directed list once, H = ⌈P/2⌉.

    Keeps i → j with i < j, and of a periodic self-image pair i → i the direction whose
    offset has its first non-zero component positive. ``pair_offsets`` (P, 3) are the
    pair vectors or the image shifts (the same for i → i pairs). A full list holds every
    real pair in both directions (checked by the builders and by an un-jitted model
    call), so at most P/2 pairs are kept and H slots always suffice. Not differentiable
    (indices only).
    """
    x, y, z = pair_offsets[:, 0], pair_offsets[:, 1], pair_offsets[:, 2]
    positive = jnp.where(x != 0.0, x > 0.0, jnp.where(y != 0.0, y > 0.0, z > 0.0))
    keep = pair_mask & ((pair_dst < pair_src) | ((pair_dst == pair_src) & positive))
    size = (pair_dst.shape[0] + 1) // 2
    slot = jnp.where(keep, jnp.cumsum(keep) - 1, size)
    index = jnp.zeros(size, jnp.int32).at[slot].set(jnp.arange(pair_dst.shape[0], dtype=jnp.int32), mode="drop")
    return index, jnp.arange(size) < jnp.sum(keep)


def _switch_with_slope(r, cutoff: float, width: float):
    """(s(r), ds/dr) of :func:`dispersion_switch`, both (H,); a hard cutoff has slope 0."""
    value = dispersion_switch(r, cutoff, width)
    if width <= 0.0:
        return value, jnp.zeros_like(r)
    return value, cutoff_polynomial_slope((r - (cutoff - width)) / width) / width


def _counting_function(x):
    """σ(x) = 1 / (1 + e^−x) and σ'(x) = σ(x) σ(−x), both from e^−|x| (no overflow, no 1 − σ cancellation)."""
    decay = jnp.exp(-jnp.abs(x))
    inverse = 1.0 / (1.0 + decay)
    return jnp.where(x >= 0.0, inverse, decay * inverse), decay * inverse * inverse


def _sum_last_axis(values):
    """Σ over the (short) last axis as explicit adds, which XLA fuses into the surrounding loop.

    XLA CPU runs ``jnp.sum`` over a 3- or 5-wide axis of a per-pair array as a separate,
    slow reduction kernel; the same sum written out is part of the elementwise fusion.
    """
    total = values[..., 0]
    for k in range(1, values.shape[-1]):
        total = total + values[..., k]
    return total


def _two_body_pass(z, vectors, dst, src, mask, segments, num_molecules, parameters, cutoff, cn_cutoff,
                   switch_width, gradient: bool, parameter_names=()):
    """Two-body D3(BJ) energy (B,) eV over a half list and, with ``gradient``, its derivatives.

    Returns ``(energy, pair_gradient, parameter_gradients)``: pair_gradient (H, 3) =
    ∂E_b/∂v_p in eV/Å for the molecule b of each pair (None without ``gradient``);
    parameter_gradients maps each name in ``parameter_names`` to ∂E/∂θ, (B,).

    Per pair p = (i, j), with R = r/a0, x = k1 (R_cov,ij / R − 1), count c = σ(x) s_cn(r),
    b = s6 t6 + s8 Q t8 (t6 = 1/(R⁶ + f⁶), t8 = 1/(R⁸ + f⁸), Q = 3 Q_i Q_j) and
    e_p = −Eh s(r) C6_ij b::

        ∂E/∂CN_n = Σ_{p ∋ n} w_p ∂C6_p/∂CN_n,        w_p = ∂e_p/∂C6_p = −Eh s b,
        ∂C6/∂CN_i = Σ_a L'_ia P_ia,  ∂C6/∂CN_j = Σ_a L_ia P'_ia,  C6 = Σ_a L_ia P_ia,
        dE/dr_p = −Eh C6 (s' b + s ∂b/∂R / a0) + (∂E/∂CN_i + ∂E/∂CN_j) dc/dr,
        ∂E/∂v_p = dE/dr_p · v_p / r_p,

    where L' = ∂L/∂CN (per atom) and (P, P') = Σ_b C6^ref(Z_i, Z_j, a, b) (L_jb, L'_jb), from
    the per-atom projections on dense systems, else from each pair's reference grid.
    """
    dtype = vectors.dtype
    tables = d3_tables()
    num_atoms = z.shape[0]
    vectors = jnp.where(mask[:, None], vectors, jnp.asarray([1.0, 0.0, 0.0], dtype))
    r = jnp.sqrt(_sum_last_axis(vectors * vectors))
    r_bohr = r / BOHR
    z_i, z_j = z[dst], z[src]
    both_ends = jnp.concatenate([dst, src])

    radii = jnp.asarray(tables.covalent_radius, dtype=dtype)
    covalent = radii[z_i] + radii[z_j]
    sigma, sigma_slope = _counting_function(D3_K1 * (covalent / r_bohr - 1.0))
    cn_switch, cn_switch_slope = _switch_with_slope(r, cn_cutoff, switch_width)
    count = jnp.where(mask, sigma * cn_switch, 0.0)
    cn = jax.ops.segment_sum(jnp.concatenate([count, count]), both_ends, num_segments=num_atoms)

    weights = d3_reference_weights(z, cn)
    dense = num_atoms * (D3_MAX_ATOMIC_NUMBER + 1) < dst.shape[0]
    if gradient:
        reference_cn = jnp.asarray(tables.reference_cn, dtype=dtype)[z]
        logit_slope = -2.0 * D3_K3 * (cn[:, None] - reference_cn)
        weight_slope = weights * (logit_slope - jnp.sum(weights * logit_slope, axis=-1, keepdims=True))
        stacked = jnp.stack([weights, weight_slope], axis=-1)
    else:
        stacked = weights[..., None]
    # Table rows T[f, e, a, b] = C6^ref(e, f, a, b) = C6^ref(f, e, b, a), b innermost.
    rows = jnp.asarray(np.swapaxes(tables.c6_reference, 2, 3), dtype=dtype)
    if dense:
        partner = jnp.einsum("neab,nbk->neak", rows[z], stacked)[src, z_i]
    else:
        # Per pair, the (7, 7) × (7, K) products written out: XLA CPU runs a batched einsum of
        # such small matrices several times slower than the fused multiply-adds.
        grid, partner_weights = rows[z_j, z_i], stacked[src]
        partner = sum(grid[:, :, b, None] * partner_weights[:, None, b, :] for b in range(grid.shape[-1]))
    own = stacked[dst]
    c6 = _sum_last_axis(own[..., 0] * partner[..., 0])

    sqrt_q = jnp.asarray(tables.sqrt_q, dtype=dtype)
    qq = 3.0 * sqrt_q[z_i] * sqrt_q[z_j]
    damping_radius = parameters["a1"] * jnp.sqrt(qq) + parameters["a2"]
    r2 = r_bohr * r_bohr
    r6 = r2 * r2 * r2
    f2 = damping_radius * damping_radius
    f6 = f2 * f2 * f2
    t6 = 1.0 / (r6 + f6)
    t8 = 1.0 / (r6 * r2 + f6 * f2)
    bracket = parameters["s6"] * t6 + parameters["s8"] * qq * t8
    switch, switch_slope = _switch_with_slope(r, cutoff, switch_width)
    c6_weight = jnp.where(mask, -HARTREE * switch * bracket, 0.0)
    molecule = segments[dst]
    energy = sum_per_molecule(c6_weight * c6, molecule, num_molecules)
    if not gradient:
        return energy, None, {}

    cn_gradient = jax.ops.segment_sum(
        jnp.concatenate([c6_weight * _sum_last_axis(own[..., 1] * partner[..., 0]),
                         c6_weight * _sum_last_axis(own[..., 0] * partner[..., 1])]),
        both_ends, num_segments=num_atoms)
    bracket_slope = -(6.0 * parameters["s6"] * t6 * t6 + 8.0 * parameters["s8"] * qq * t8 * t8 * r2) * r2 * r2 * r_bohr
    energy_slope = -HARTREE * c6 * (switch_slope * bracket + switch * bracket_slope / BOHR)
    count_slope = (D3_K1 * sigma_slope * (-covalent / (r2 * BOHR)) * cn_switch + sigma * cn_switch_slope)
    distance_gradient = energy_slope + (cn_gradient[dst] + cn_gradient[src]) * count_slope
    pair_gradient = jnp.where(mask, distance_gradient / r, 0.0)[:, None] * vectors

    parameter_gradients = {}
    if parameter_names:
        scale = jnp.where(mask, -HARTREE * switch * c6, 0.0)
        radius_slope = -(6.0 * parameters["s6"] * t6 * t6 + 8.0 * parameters["s8"] * qq * t8 * t8 * f2) * f2 * f2 * damping_radius
        per_pair = {"s6": scale * t6, "s8": scale * qq * t8, "a1": scale * radius_slope * jnp.sqrt(qq),
                    "a2": scale * radius_slope}
        for name in parameter_names:
            parameter_gradients[name] = sum_per_molecule(per_pair[name], molecule, num_molecules)
    return energy, pair_gradient, parameter_gradients


TWO_BODY_PARAMETERS = ("s6", "s8", "a1", "a2")
"""The damping parameters the two-body energy depends on."""


@functools.partial(jax.custom_jvp, nondiff_argnums=(0, 1, 2, 3))
def d3_two_body_energy(num_molecules: int, cutoff: float, cn_cutoff: float, switch_width: float,
                       atomic_numbers, vectors, dst, src, mask, segments, parameters):
    """Two-body D3(BJ) energy (B,) eV over a *half* pair list, with a hand-derived derivative.

    Same sum as the two-body part of :func:`d3_dispersion_energy` (``half_list=True``).
    Its JVP (hence gradient, forces and stress through ``vectors``) comes from
    :func:`_two_body_pass`: one per-pair pass for the coordination numbers, one for C6, the
    energy and the per-atom ∂E/∂CN, and one for ∂E/∂v_p, instead of the many per-pair
    arrays of automatic differentiation. The rule is itself plain JAX, so forward mode,
    second derivatives and ``vmap`` work.

    Args:
      num_molecules: B (static); cutoff, cn_cutoff, switch_width: Å (static).
      atomic_numbers: (N,); vectors: (H, 3) Å, each unordered pair once; dst, src: (H,);
      mask: (H,) bool; segments: (N,); parameters: dict with s6, s8, a1, a2 (arrays).
    """
    return _two_body_pass(atomic_numbers, vectors, dst, src, mask, segments, num_molecules, parameters, cutoff,
                          cn_cutoff, switch_width, gradient=False)[0]


def _two_body_energy_jvp(num_molecules, cutoff, cn_cutoff, switch_width, primals, tangents):
    atomic_numbers, vectors, dst, src, mask, segments, parameters = primals
    vector_tangent, parameter_tangents = tangents[1], tangents[6]
    moving = [name for name in TWO_BODY_PARAMETERS
              if not isinstance(parameter_tangents[name], jax.custom_derivatives.SymbolicZero)]
    energy, pair_gradient, parameter_gradients = _two_body_pass(
        atomic_numbers, vectors, dst, src, mask, segments, num_molecules, parameters, cutoff, cn_cutoff,
        switch_width, gradient=True, parameter_names=moving)
    tangent = jnp.zeros_like(energy)
    if not isinstance(vector_tangent, jax.custom_derivatives.SymbolicZero):
        tangent = tangent + sum_per_molecule(jnp.sum(pair_gradient * vector_tangent, axis=-1), segments[dst],
                                             num_molecules)
    for name in moving:
        tangent = tangent + parameter_gradients[name] * parameter_tangents[name]
    return energy, tangent


d3_two_body_energy.defjvp(_two_body_energy_jvp, symbolic_zeros=True)


def d3_dispersion_energy(
    atomic_numbers,
    pair_vectors,
    pair_dst,
    pair_src,
    pair_mask,
    segments,
    num_molecules: int,
    parameters: D3BJParameters | dict,
    *,
    cutoff: float,
    cn_cutoff: float | None = None,
    switch_width: float = 0.0,
    triplets=None,
    triplet_mask=None,
    three_body_cutoff: float | None = None,
    half_list: bool = False,
    triangle_chunk: int = ATM_CHUNK_TRIANGLES,
):
    """D3(BJ) dispersion energy per molecule (two-body, plus ATM when ``triplets`` given).

    Args:
      atomic_numbers: (N,) int, 1…103 for real atoms (padded atoms: 0).
      pair_vectors: (P, 3) r_src − r_dst (+ periodic shift) in Å, *full* directed list.
      pair_dst, pair_src: (P,) indices; pair_mask: (P,) bool, True for real pairs.
      segments: (N,) molecule index per atom; num_molecules: B (static).
      parameters: :class:`D3BJParameters` or a dict with s6, s8, a1, a2 (Bohr), s9,
        alp (the values may be traced arrays, e.g. trainable).
      cutoff: two-body cutoff in Å; cn_cutoff: CN cutoff in Å (None → ``cutoff``);
      switch_width: width of the smooth switch in Å (0 → hard cutoffs).
      triplets: (T, 2) int pair indices of pairs sharing their first atom, each
        triangle once per vertex (:func:`physnetjax.neighbors.pair_triplets`; None → no ATM);
      triplet_mask: (T,) bool (None → all real); three_body_cutoff: cutoff of each
        triangle side in Å (None → ``cn_cutoff``).
      half_list: the pair arrays already hold each unordered pair once (e.g. selected
        by :func:`one_direction` before computing the vectors, which saves the caller the
        full list's vectors); not with ``triplets``, which index a full list.
      triangle_chunk: pairs-of-pairs of the ATM sum evaluated at once (module docstring, "Memory").

    Returns:
      (B,) energies in eV; padded pairs/atoms contribute exactly 0 to the energy and
      to its gradient.

    The index arrays may be NumPy arrays of a host batch, also under a ``jit`` that closes over them: they are taken
    as JAX arrays, which the halves selected from traced vectors can index.
    """
    if isinstance(parameters, D3BJParameters):
        parameters = dataclasses.asdict(parameters)
    atomic_numbers, pair_dst, pair_src, segments = map(jnp.asarray, (atomic_numbers, pair_dst, pair_src, segments))
    cn_cutoff = cutoff if cn_cutoff is None else cn_cutoff
    if half_list and triplets is not None:
        raise ValueError("triplets index a full directed pair list; call with half_list=False")
    if half_list:
        dst, src, half_mask, vectors = pair_dst, pair_src, pair_mask, pair_vectors
    else:
        half, half_mask = one_direction(pair_dst, pair_src, pair_vectors, pair_mask)
        dst, src, vectors = pair_dst[half], pair_src[half], pair_vectors[half]
    if triplets is None:
        two_body = {name: jnp.asarray(parameters[name], pair_vectors.dtype) for name in TWO_BODY_PARAMETERS}
        return d3_two_body_energy(num_molecules, cutoff, cn_cutoff, switch_width, atomic_numbers, vectors, dst, src,
                                  half_mask, segments, two_body)
    energy, weights = d3_two_body_autodiff(atomic_numbers, vectors, dst, src, half_mask, segments, num_molecules,
                                           parameters, cutoff=cutoff, cn_cutoff=cn_cutoff, switch_width=switch_width)
    three_body_cutoff = cn_cutoff if three_body_cutoff is None else three_body_cutoff
    return energy + _atm_energy(
        triplets, triplet_mask, pair_vectors, atomic_numbers, weights, pair_dst, pair_src, pair_mask, segments,
        num_molecules, parameters, three_body_cutoff, switch_width, triangle_chunk,
    )


def d3_atomic_energies(
    atomic_numbers,
    pair_vectors,
    pair_dst,
    pair_src,
    pair_mask,
    parameters: D3BJParameters | dict,
    *,
    cutoff: float,
    cn_cutoff: float | None = None,
    switch_width: float = 0.0,
    triplets=None,
    triplet_mask=None,
    three_body_cutoff: float | None = None,
    triangle_chunk: int = ATM_CHUNK_TRIANGLES,
):
    """The D3(BJ) energy of :func:`d3_dispersion_energy` split among the atoms, (N,) eV.

    Atom i receives half of each pair energy it is in and a third of each ATM triangle::

        E_i = ½ Σ_{j} e_ij + ⅓ Σ_{triangles ∋ i} e_ijk

    (a periodic atom and its image form a pair whose energy goes wholly to that atom). Each
    pair-of-pairs of ``triplets`` holds one third of its triangle's energy (one entry per
    vertex) and gives it in equal parts to its three atoms. Summed over a molecule's atoms
    this is :func:`d3_dispersion_energy` of that molecule, to rounding. The plain formula,
    for outputs that are not differentiated (the model's per-atom ``energies``).

    Args: as :func:`d3_dispersion_energy` (a *full* directed pair list), without segments.

    Returns:
      (N,) energies in eV, 0 for padded atoms.
    """
    if isinstance(parameters, D3BJParameters):
        parameters = dataclasses.asdict(parameters)
    atomic_numbers, pair_dst, pair_src = map(jnp.asarray, (atomic_numbers, pair_dst, pair_src))
    cn_cutoff = cutoff if cn_cutoff is None else cn_cutoff
    num_atoms = atomic_numbers.shape[0]
    half, half_mask = one_direction(pair_dst, pair_src, pair_vectors, pair_mask)
    dst, src = pair_dst[half], pair_src[half]
    pair_energy, weights = d3_two_body_pair_energies(atomic_numbers, pair_vectors[half], dst, src, half_mask,
                                                     parameters, cutoff=cutoff, cn_cutoff=cn_cutoff,
                                                     switch_width=switch_width)
    energies = 0.5 * jax.ops.segment_sum(jnp.concatenate([pair_energy, pair_energy]), jnp.concatenate([dst, src]),
                                         num_segments=num_atoms)
    if triplets is None:
        return energies
    three_body_cutoff = cn_cutoff if three_body_cutoff is None else three_body_cutoff

    def per_atom(rows, rows_mask):
        triangle = _atm_triangle_energies(rows, rows_mask, pair_vectors, atomic_numbers, weights, pair_dst, pair_src,
                                          pair_mask, parameters, three_body_cutoff, switch_width)
        p, q = rows[:, 0], rows[:, 1]
        vertices = jnp.concatenate([pair_dst[p], pair_src[p], pair_src[q]])
        return jax.ops.segment_sum(jnp.tile(triangle, 3), vertices, num_segments=num_atoms)

    return energies + _sum_over_triangles(per_atom, triplets, triplet_mask, triangle_chunk) / 9.0


def d3_two_body_autodiff(atomic_numbers, vectors, dst, src, mask, segments, num_molecules: int, parameters, *,
                         cutoff: float, cn_cutoff: float, switch_width: float):
    """The two-body D3(BJ) energy of :func:`d3_two_body_energy` as the plain formula, left to autodiff.

    Used with the ATM term (whose C6 need the same reference weights, returned here) and
    as the independent check of :func:`d3_two_body_energy`'s hand-derived derivative.

    Args: as :func:`d3_two_body_energy` (a half list), ``parameters`` a dict.

    Returns:
      ((B,) energies in eV, (N, 7) reference weights L).
    """
    pair_energy, weights = d3_two_body_pair_energies(atomic_numbers, vectors, dst, src, mask, parameters,
                                                     cutoff=cutoff, cn_cutoff=cn_cutoff, switch_width=switch_width)
    return sum_per_molecule(pair_energy, segments[dst], num_molecules), weights


def d3_two_body_pair_energies(atomic_numbers, vectors, dst, src, mask, parameters, *, cutoff: float,
                              cn_cutoff: float, switch_width: float):
    """The two-body D3(BJ) energy of each pair of a *half* list, e_ij in eV, and the reference weights.

    e_ij = −s(r_ij) [s6 C6_ij / (r_ij⁶ + f_ij⁶) + s8 C8_ij / (r_ij⁸ + f_ij⁸)] (module docstring);
    the coordination numbers in C6_ij count every pair of the list at both ends.

    Args: as :func:`d3_two_body_energy` (a half list, no segments), ``parameters`` a dict.

    Returns:
      ((H,) pair energies in eV, 0 on padded pairs; (N, 7) reference weights L).
    """
    dtype = vectors.dtype
    tables = d3_tables()
    z = atomic_numbers
    num_atoms = z.shape[0]
    vectors = jnp.where(mask[:, None], vectors, jnp.asarray([1.0, 0.0, 0.0], dtype))
    r = jnp.sqrt(jnp.sum(vectors * vectors, axis=-1))
    r_bohr = r / BOHR
    z_i, z_j = z[dst], z[src]

    cn = d3_coordination_numbers(z_i, z_j, r_bohr, dst, src, mask, num_atoms,
                                 dispersion_switch(r, cn_cutoff, switch_width))
    weights = d3_reference_weights(z, cn)
    if num_atoms * (D3_MAX_ATOMIC_NUMBER + 1) < dst.shape[0]:
        c6 = d3_atom_pair_c6(z, weights, dst, src)
    else:
        c6 = d3_pair_c6(z_i, z_j, weights[dst], weights[src])

    sqrt_q = jnp.asarray(tables.sqrt_q, dtype=dtype)
    qq = 3.0 * sqrt_q[z_i] * sqrt_q[z_j]
    c8 = c6 * qq
    damping_radius = parameters["a1"] * jnp.sqrt(qq) + parameters["a2"]
    r2 = r_bohr * r_bohr
    r6 = r2 * r2 * r2
    f2 = damping_radius * damping_radius
    f6 = f2 * f2 * f2
    pair_energy = (parameters["s6"] * c6 / (r6 + f6) + parameters["s8"] * c8 / (r6 * r2 + f6 * f2))
    pair_energy = -HARTREE * pair_energy * dispersion_switch(r, cutoff, switch_width)
    return jnp.where(mask, pair_energy, 0.0), weights


def _atm_energy(triplets, triplet_mask, vectors, z, weights, pair_dst, pair_src, pair_mask, segments,
                num_molecules, parameters, cutoff, switch_width, chunk):
    """⅓ Σ over pairs-of-pairs (p: i→j, q: i→k) of the ATM triangle energy, (B,) eV."""
    def per_molecule(rows, rows_mask):
        triangle = _atm_triangle_energies(rows, rows_mask, vectors, z, weights, pair_dst, pair_src, pair_mask,
                                          parameters, cutoff, switch_width)
        return sum_per_molecule(triangle, segments[pair_dst[rows[:, 0]]], num_molecules)

    return _sum_over_triangles(per_molecule, triplets, triplet_mask, chunk) / 3.0


def _sum_over_triangles(contribution, triplets, triplet_mask, chunk: int):
    """Σ of ``contribution(rows, rows_mask)`` over the pairs-of-pairs ``triplets`` (T, 2), ``chunk`` rows at a time.

    Up to ``chunk`` rows: one call. Beyond: the list is padded with masked rows to whole chunks and summed by
    ``lax.scan`` over a ``jax.checkpoint`` body, whose gradient recomputes each chunk's intermediates instead of
    storing them for all T rows (module docstring, "Memory"). ``contribution`` returns one array (per molecule or
    per atom) whose entries are zero for masked rows.
    """
    count = triplets.shape[0]
    if count <= chunk:
        return contribution(triplets, triplet_mask)
    mask = jnp.ones(count, bool) if triplet_mask is None else jnp.asarray(triplet_mask)
    chunks = -(-count // chunk)
    rows = jnp.pad(jnp.asarray(triplets), ((0, chunks * chunk - count), (0, 0))).reshape(chunks, chunk, 2)
    rows_mask = jnp.pad(mask, (0, chunks * chunk - count)).reshape(chunks, chunk)
    total = jax.eval_shape(contribution, rows[0], rows_mask[0])

    @jax.checkpoint
    def add_chunk(running, chunk_rows):
        return running + contribution(*chunk_rows), None

    return jax.lax.scan(add_chunk, jnp.zeros(total.shape, total.dtype), (rows, rows_mask))[0]


def _atm_triangle_energies(triplets, triplet_mask, vectors, z, weights, pair_dst, pair_src, pair_mask, parameters,
                           cutoff, switch_width):
    """The ATM energy e_ijk in eV of the triangle of each pair-of-pairs (p: i→j, q: i→k), (T,), 0 on padding.

    A triangle appears once per vertex, so the energy of a list is ⅓ Σ_t e_t.
    """
    p, q = triplets[:, 0], triplets[:, 1]
    pair_mask = jnp.asarray(pair_mask)  # a host batch's, indexed by a chunk's traced rows
    real = pair_mask[p] & pair_mask[q]
    if triplet_mask is not None:
        real = real & triplet_mask
    bohr2 = BOHR * BOHR
    vectors = jnp.where(pair_mask[:, None], vectors, jnp.asarray([1.0, 0.0, 0.0], vectors.dtype))
    side_ij, side_ik = vectors[p], vectors[q]
    side_jk = side_ik - side_ij
    r2_ij = jnp.sum(side_ij * side_ij, axis=-1) / bohr2
    r2_ik = jnp.sum(side_ik * side_ik, axis=-1) / bohr2
    r2_jk = jnp.sum(side_jk * side_jk, axis=-1) / bohr2
    real = real & (r2_ij > 0.0) & (r2_ik > 0.0) & (r2_jk > 0.0)
    r2_ij = jnp.where(real, r2_ij, 1.0)
    r2_ik = jnp.where(real, r2_ik, 1.0)
    r2_jk = jnp.where(real, r2_jk, 1.0)

    atom_i, atom_j, atom_k = pair_dst[p], pair_src[p], pair_src[q]
    i, j, k = z[atom_i], z[atom_j], z[atom_k]
    c6_product = (d3_pair_c6(i, j, weights[atom_i], weights[atom_j]) * d3_pair_c6(i, k, weights[atom_i], weights[atom_k])
                  * d3_pair_c6(j, k, weights[atom_j], weights[atom_k]))
    c6_product = jnp.where(real, c6_product, 1.0)
    vdw_radius = jnp.asarray(d3_tables().vdw_radius, dtype=r2_ij.dtype)
    radius_product = vdw_radius[i, j] * vdw_radius[i, k] * vdw_radius[j, k]
    r2_product = r2_ij * r2_ik * r2_jk
    r_product = jnp.sqrt(r2_product)
    r3 = r2_product * r_product
    # 3 cos θ_i cos θ_j cos θ_k / (r_ij r_ik r_jk)³ from the law of cosines.
    angular = 0.375 * (r2_ij + r2_ik - r2_jk) * (r2_ij - r2_ik + r2_jk) * (-r2_ij + r2_ik + r2_jk) / (
        r3 * r2_product) + 1.0 / r3
    mean_ratio = (4.0 / 3.0) * (radius_product / r_product) ** (1.0 / 3.0)
    damping = 1.0 / (1.0 + 6.0 * mean_ratio ** (parameters["alp"] + 2.0))
    switch = (dispersion_switch(jnp.sqrt(r2_ij) * BOHR, cutoff, switch_width)
              * dispersion_switch(jnp.sqrt(r2_ik) * BOHR, cutoff, switch_width)
              * dispersion_switch(jnp.sqrt(r2_jk) * BOHR, cutoff, switch_width))
    triangle = HARTREE * parameters["s9"] * jnp.sqrt(c6_product) * angular * damping * switch
    return jnp.where(real, triangle, 0.0)
