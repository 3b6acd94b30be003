"""The batch pytree the model consumes, and the one function that feeds it to the model.

A :class:`Batch` holds B molecule slots (or periodic cells), N atom slots and P
edge slots; trailing slots may be padding. Conventions:

* Atoms of one molecule are contiguous and molecules appear in order, so
  ``atom_segments`` is sorted; padded atoms sit at the end, belong to the last
  molecule slot and have ``atom_mask`` False (their Z is 0). (The trainer's
  device-gathered batches, :mod:`physnetjax.train.device_batches`, also pad inside
  each molecule slot; nothing but the masks marks padding.)
* ``dst_idx``/``src_idx`` is a *full directed* edge list (i ← j and j ← i) of all
  pairs closer than the message-passing cutoff; padded edges point at atom N−1
  and have ``edge_mask`` False. The optional ``pair_*`` arrays are a second full
  list for the pair terms (electrostatics, ZBL, dispersion) when they reach further
  than the message-passing cutoff.
* ``triplets`` (T, 2) index pairs of that pair list (the ``pair_*`` list when present,
  else the edge list) sharing their first atom, for the three-body dispersion term
  (:mod:`~physnetjax.neighbors.triplets`); padded triplets have ``triplet_mask`` False.
* ``shifts`` (P, 3) Å are periodic image offsets: the edge vector is
  r_src − r_dst + shift. ``cells`` (B, 3, 3) Å hold cell vectors as rows.
"""

from __future__ import annotations

from typing import Optional

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

from physnetjax.errors import PhysNetInputError


@flax.struct.dataclass
class Batch:
    """Padded graph batch (see module docstring). Shapes: N atoms, P edges, Q pairs, B molecules.

    Fields:
      atomic_numbers: (N,) int32.
      positions: (N, 3) float, Å.
      atom_segments: (N,) int32 molecule slot of each atom (sorted).
      atom_mask: (N,) bool, True for real atoms.
      dst_idx, src_idx: (P,) int32 full directed message-passing edge list.
      edge_mask: (P,) bool, True for real edges.
      total_charges: (B,) float, e.
      molecule_mask: (B,) bool, True for real molecule slots.
      shifts: (P, 3) float Å or None (non-periodic).
      cells: (B, 3, 3) float Å or None (non-periodic).
      pair_dst, pair_src, pair_mask, pair_shifts: optional (Q,) long-range full list.
      triplets: optional (T, 2) int32 indices into the pair-term list; triplet_mask: (T,) bool.
      num_molecules: B (static).
      pair_halves: the pair list is in halves layout (slot k + Q/2 reverses slot k,
        :mod:`~physnetjax.neighbors.halves`; static).
    """

    atomic_numbers: jax.Array
    positions: jax.Array
    atom_segments: jax.Array
    atom_mask: jax.Array
    dst_idx: jax.Array
    src_idx: jax.Array
    edge_mask: jax.Array
    total_charges: jax.Array
    molecule_mask: jax.Array
    shifts: Optional[jax.Array] = None
    cells: Optional[jax.Array] = None
    pair_dst: Optional[jax.Array] = None
    pair_src: Optional[jax.Array] = None
    pair_mask: Optional[jax.Array] = None
    pair_shifts: Optional[jax.Array] = None
    triplets: Optional[jax.Array] = None
    triplet_mask: Optional[jax.Array] = None
    num_molecules: int = flax.struct.field(pytree_node=False, default=1)
    pair_halves: bool = flax.struct.field(pytree_node=False, default=False)

    @property
    def num_atoms(self) -> int:
        return self.atomic_numbers.shape[0]

    @property
    def num_edges(self) -> int:
        return self.dst_idx.shape[0]

    @property
    def shape_key(self) -> tuple:
        """Static shapes that determine a compilation: (N, P, Q, B, periodic), plus T with triplets."""
        num_pairs = None if self.pair_dst is None else self.pair_dst.shape[0]
        key = (self.num_atoms, self.num_edges, num_pairs, self.num_molecules, self.cells is not None)
        return key if self.triplets is None else key + (self.triplets.shape[0],)


def one_system_batch(atomic_numbers, positions, dst_idx, src_idx, edge_mask=None, *, total_charge=0.0,
                     shifts=None, cell=None, **pair_fields) -> Batch:
    """A :class:`Batch` of one molecule or periodic cell (B = 1, no padded atoms); jit-able.

    Args:
      atomic_numbers: (N,) ints; positions: (N, 3) Å.
      dst_idx, src_idx: (P,) edge list; edge_mask: (P,) bool, None for all real.
      total_charge: Q in e.
      shifts: (P, 3) Å image offsets and cell: (3, 3) Å rows, for a periodic cell.
      pair_fields: optional ``pair_dst``, ``pair_src``, ``pair_mask``, ``pair_shifts``, ``triplets``, ``triplet_mask``.
    """
    positions = jnp.asarray(positions)
    n = positions.shape[0]
    return Batch(
        atomic_numbers=jnp.asarray(atomic_numbers, dtype=jnp.int32),
        positions=positions,
        atom_segments=jnp.zeros((n,), dtype=jnp.int32),
        atom_mask=jnp.ones((n,), dtype=bool),
        dst_idx=jnp.asarray(dst_idx),
        src_idx=jnp.asarray(src_idx),
        edge_mask=jnp.ones(jnp.shape(dst_idx), dtype=bool) if edge_mask is None else edge_mask,
        total_charges=jnp.full((1,), total_charge, dtype=positions.dtype),
        molecule_mask=jnp.ones((1,), dtype=bool),
        shifts=None if shifts is None else shifts.astype(positions.dtype),
        cells=None if cell is None else jnp.asarray(cell, dtype=positions.dtype)[None],
        num_molecules=1,
        **pair_fields,
    )

def apply_batch(model, params, batch: Batch, compute_forces: bool = True) -> dict:
    """Run ``model`` (a :class:`physnetjax.PhysNet`) on a :class:`Batch`; returns the output dict.

    ``compute_forces=False`` skips the model's inner gradient (``forces`` None, other outputs equal).

    Raises:
      PhysNetInputError: called outside ``jit`` on a batch holding elements beyond the model's
        ``max_atomic_number`` (the network's embedding has no row for them: NaN energies) or its D3 data
        (:attr:`~physnetjax.PhysNet.supported_max_atomic_number`). Under ``jit`` the
        batch is not looked at: check it before.
    """
    z = batch.atomic_numbers
    if not isinstance(z, jax.core.Tracer):
        limit = model.supported_max_atomic_number
        beyond = np.unique(np.asarray(z)[np.asarray(z) > limit])
        if beyond.size:
            reason = ("its D3 dispersion's reference data end there" if limit < model.max_atomic_number
                      else "use a model trained with them")
            raise PhysNetInputError(f"the batch holds atomic number(s) {beyond.tolist()} beyond this model's range "
                                    f"Z = 1..{limit}: {reason}")
    return model.apply(
        params,
        batch.atomic_numbers,
        batch.positions,
        batch.dst_idx,
        batch.src_idx,
        batch.atom_segments,
        batch.num_molecules,
        batch.edge_mask,
        batch.atom_mask,
        total_charges=batch.total_charges,
        shifts=batch.shifts,
        cells=batch.cells,
        pair_dst=batch.pair_dst,
        pair_src=batch.pair_src,
        pair_mask=batch.pair_mask,
        pair_shifts=batch.pair_shifts,
        triplets=batch.triplets,
        triplet_mask=batch.triplet_mask,
        pair_halves=batch.pair_halves,
        compute_forces=compute_forces,
    )


def model_pair_cutoff(model) -> Optional[float]:
    """How far the model's pair terms reach, in Å.

    Returns ``None`` when they need *all* pairs of a molecule (charges with no
    long-range cutoff), ``0.0`` when the model has no pair terms, otherwise the
    largest pair-term cutoff. Builders add a separate pair list only when this
    exceeds the message-passing cutoff.
    """
    reach = 0.0
    if model.charges:
        if model.coulomb_lr_cutoff is None:
            return None
        reach = max(reach, model.coulomb_lr_cutoff)
    if model.zbl:
        reach = max(reach, model.repulsion_cutoff)
    if getattr(model, "dispersion", None) is not None:
        reach = max(reach, model.dispersion_cutoff)
    return reach


def periodic_pair_cutoff(model) -> float:
    """:func:`model_pair_cutoff` of a model evaluated on a periodic cell, where it must be finite.

    Raises:
      PhysNetInputError: the model's charges have no ``coulomb_lr_cutoff`` (its Coulomb sum over all pairs has no end
        in a crystal), with what to do instead.
    """
    pair_cutoff = model_pair_cutoff(model)
    if pair_cutoff is None:
        raise PhysNetInputError(
            "a periodic system needs a finite reach of the pair terms; this model has charges without "
            "coulomb_lr_cutoff, whose Coulomb sum over a crystal's images has no end: evaluate a molecule in a "
            "vacuum box as an isolated one (pbc=False), or train a model with --coulomb-lr-cutoff for crystals")
    return pair_cutoff


def image_reach(model) -> tuple[float, str]:
    """(Å, words): how far from an atom the model sees a periodic image: message passing and finite pair terms.

    Unlike :func:`physnetjax.md.jax_md.model_reach` (the radius an MD neighbor list needs), it is never
    None: all-pairs Coulomb (charges without a long-range cutoff) is left out: it reaches a molecule's
    own atoms only, never the images of a periodic reference calculation.
    """
    pair_cutoff = model_pair_cutoff(model)
    if pair_cutoff is None:
        pair_cutoff = model_pair_cutoff(model.clone(charges=False))
    if pair_cutoff > model.cutoff:
        return pair_cutoff, f"{pair_cutoff:g} Å (the reach of the model's pair terms)"
    return model.cutoff, f"{model.cutoff:g} Å (the model's cutoff)"


def model_triplet_cutoff(model) -> Optional[float]:
    """Three-body cutoff of the model in Å (its ``dispersion_cutoff``), or None without a three-body term."""
    if getattr(model, "dispersion", None) is not None and getattr(model, "dispersion_three_body", False):
        return model.dispersion_cutoff
    return None
