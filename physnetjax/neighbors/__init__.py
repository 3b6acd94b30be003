"""Neighbor lists and the batch pytree consumed by the model."""

from physnetjax.neighbors.batch import Batch, apply_batch, model_pair_cutoff
from physnetjax.neighbors.molecules import batch_molecules, molecule_pairs, round_up

__all__ = ["Batch", "apply_batch", "batch_molecules", "model_pair_cutoff", "molecule_pairs", "round_up"]
