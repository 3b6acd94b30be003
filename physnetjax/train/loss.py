"""Masked error sums, the weighted loss, and validation metrics.

For each label k ∈ {E, E/atom, F, D, Q, σ, σ·V/N} a batch yields Σ f(pred − ref) over the
entries that carry the label (padding and missing labels excluded, never
zero-filled) and the number of such entries. With f = square (MSE, default) or
abs (MAE, as PhysNet) the loss is::

    L = w_E · S_E / n_E + w_F · S_F / n_F + w_D · S_D / n_D + w_Q · S_Q / n_Q + w_σ · S_W / n_W

where S/n are taken over the *global* batch (all devices), so the loss does not
depend on how the batch is split. E is the energy per molecule (eV), or per atom
(eV/atom) with ``per_atom_energy``; F are force components (eV/Å); D dipole
components (e·Å); Q the sum of the predicted charges against the total charge
(e), which the PhysNet charge correction makes exact, so its default weight is 0.
The stress σ (eV/Å³, periodic frames with a stress label) enters the loss as the
virial per atom W = σ · V / N (eV/atom; V the cell volume, N its atom count), whose
errors compare with per-atom energy errors whatever the cell's size and density
(MACE weighs its virials the same way); the metrics report the stress components
themselves (S, eV/Å³).

Per-frame loss weights (:attr:`physnetjax.data.Dataset.term_weights`, MACE's ``config_weight`` and
``config_{energy,forces,stress}_weight``) weigh each frame's entries in the loss sums::

    S_t = Σ_k ω_k,t Σ_{entries j of frame k} f(err_kj),    n_t = Σ_k (number of labelled entries of frame k)

with ω_k,t = w_k · w_k,t (w_k,t = 1 for the dipole and charge terms): every force component of every atom
of frame k, every stress component, its energy, carries ω_k,t. The count n_t stays unweighted (MACE's
convention): a frame of weight 0 drops out of S_t but still counts in n_t, weight 2 counts its errors
twice, and all weights 1 give the unweighted loss exactly. The metrics (MAE, RMSE) are always
unweighted: they describe the model, not the loss.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from physnetjax.neighbors import apply_batch

TERMS = ("E", "Ea", "F", "D", "Q", "S", "W")
"""Error terms: energy per molecule, energy per atom, force components, dipole components, total charge, stress
components (eV/Å³) and virial-per-atom components σ · V / N (eV/atom)."""
SUMS = ("abs_sum", "sq_sum", "count", "weighted_abs_sum", "weighted_sq_sum")
"""The error sums of a term, in the order of its tuple: Σ|err| and Σerr² (metrics), the number of labelled
entries, and Σ ω|err| and Σ ω err² with the per-frame loss weights ω (the loss; the same values as the first two
when the batch carries no weights)."""
WEIGHT_LABELS = {"E": "E_weight", "Ea": "E_weight", "F": "F_weight", "D": "frame_weight", "Q": "frame_weight",
                 "S": "S_weight", "W": "S_weight"}
"""The label array of the per-frame loss weight ω of each term (:mod:`physnetjax.train.batching`): ``E_weight``
(B,), ``F_weight`` (N,) per atom, ``S_weight`` (B,), ``frame_weight`` (B,); present only for weighted data."""
PREDICTIONS = ("pred_E", "pred_F", "pred_D", "pred_S")
"""Keys of the predictions among the error sums (``pred_D`` only for a charge model, ``pred_S`` only for a periodic
batch)."""


def error_sums(model, params, batch, labels) -> dict:
    """Σ|err|, Σerr², count, Σω|err|, Σωerr² (:data:`SUMS`) for every term on one device batch (no device axis).

    Returns {term: (abs_sum, sq_sum, count, weighted_abs_sum, weighted_sq_sum)} of scalars, plus predictions under
    "pred_E" (B,), "pred_F" (N, 3), for a charge model "pred_D" (B, 3) (e·Å, about the origin of the
    batch's positions) and for a periodic batch "pred_S" (B, 3, 3) eV/Å³.
    """
    return sums_from_outputs(apply_batch(model, params, batch), labels, model.charges)


def sums_from_outputs(out: dict, labels: dict, charges: bool) -> dict:
    """:func:`error_sums` of model outputs ``out`` (energy (B,), forces (N, 3), dipoles, sum_charges, stress);
    the dipole and charge terms only when ``charges``, the stress terms only for a periodic batch (``out['stress']``
    (B, 3, 3) and labels ``S`` (B, 3, 3) eV/Å³, ``S_mask`` (B,), ``volume_per_atom`` (B,) Å³). The weighted sums
    take the per-frame loss weights of :data:`WEIGHT_LABELS` when ``labels`` carry them, else they are the
    unweighted sums themselves (the same program as without weights)."""
    dtype = out["energy"].dtype
    e_mask = labels["E_mask"]
    e_err = jnp.where(e_mask, out["energy"] - labels["E"], 0.0)
    f_mask = jnp.broadcast_to(labels["F_mask"][:, None], labels["F"].shape)
    f_err = jnp.where(f_mask, out["forces"] - labels["F"], 0.0)
    errors = {
        "E": (e_err, e_mask),
        "Ea": (e_err / labels["num_atoms"], e_mask),
        "F": (f_err, f_mask),
    }
    if "S" in labels and out.get("stress") is not None:
        s_mask = jnp.broadcast_to(labels["S_mask"][:, None, None], labels["S"].shape)
        s_err = jnp.where(s_mask, out["stress"] - labels["S"], 0.0)
        errors["S"] = (s_err, s_mask)
        errors["W"] = (s_err * labels["volume_per_atom"][:, None, None], s_mask)
    if charges:
        d_mask = jnp.broadcast_to(labels["D_mask"][:, None], labels["D"].shape)
        errors["D"] = (jnp.where(d_mask, out["dipoles"] - labels["D"], 0.0), d_mask)
        errors["Q"] = (jnp.where(labels["Q_mask"], out["sum_charges"] - labels["Q"], 0.0), labels["Q_mask"])
    sums = {}
    for term in TERMS:
        if term in errors:
            err, mask = errors[term]
            abs_err, sq_err = jnp.abs(err), err * err
            unweighted = (jnp.sum(abs_err), jnp.sum(sq_err))
            weighted = unweighted
            if WEIGHT_LABELS[term] in labels:
                weight = labels[WEIGHT_LABELS[term]]
                weight = weight.reshape(weight.shape + (1,) * (err.ndim - weight.ndim))  # frame/atom → entries
                weighted = (jnp.sum(weight * abs_err), jnp.sum(weight * sq_err))
            sums[term] = (*unweighted, jnp.sum(mask).astype(dtype), *weighted)
        else:
            sums[term] = (jnp.zeros((), dtype),) * len(SUMS)
    sums["pred_E"] = out["energy"]
    sums["pred_F"] = out["forces"]
    if charges:
        sums["pred_D"] = out["dipoles"]
    if "S" in errors:
        sums["pred_S"] = out["stress"]
    return sums


def global_error_sums(model, params, batch, labels) -> dict:
    """:func:`error_sums` over the leading device axis; term sums are totalled over devices."""
    per_device = jax.vmap(lambda b, l: error_sums(model, params, b, l))(batch, labels)
    totals = {t: tuple(jnp.sum(x) for x in per_device[t]) for t in TERMS}
    for key in PREDICTIONS:
        if key in per_device:
            totals[key] = per_device[key]
    return totals


def loss_from_sums(sums: dict, weights: dict, kind: str):
    """Weighted loss Σ_t w_t · S_t / n_t from global error sums {term: :data:`SUMS`}, S_t the sums weighted per frame
    (Σω err² for ``kind`` "mse", Σω|err| for "mae") and n_t the unweighted count; ``weights`` {term: w_t}."""
    index = SUMS.index("weighted_sq_sum" if kind == "mse" else "weighted_abs_sum")
    total = 0.0
    for term, weight in weights.items():
        if weight:
            total = total + weight * sums[term][index] / jnp.maximum(sums[term][2], 1.0)
    return total


def loss_weights(config) -> dict:
    """{term: weight} from a :class:`TrainConfig` (energy per atom replaces per molecule if asked)."""
    energy_term = "Ea" if config.per_atom_energy else "E"
    return {energy_term: config.energy_weight, "F": config.forces_weight,
            "D": config.dipole_weight, "Q": config.charge_weight, "W": config.stress_weight}


def metrics_from_totals(totals: dict) -> dict:
    """MAE/RMSE per term from host-accumulated {term: [abs_sum, sq_sum, count, ...]} (float64), unweighted (the
    per-frame loss weights of :data:`SUMS` do not enter).

    Keys: energy_mae/rmse (eV), energy_per_atom_mae/rmse (eV/atom), forces_mae/rmse
    (eV/Å), dipole_mae/rmse (e·Å), charge_mae/rmse (e), stress_mae/rmse (eV/Å³), virial_per_atom_mae/rmse
    (eV/atom); terms without labels (or absent from ``totals``) are omitted.
    """
    names = {"E": "energy", "Ea": "energy_per_atom", "F": "forces", "D": "dipole", "Q": "charge", "S": "stress",
             "W": "virial_per_atom"}
    metrics = {}
    for term, name in names.items():
        abs_sum, sq_sum, count = tuple(totals.get(term, (0.0, 0.0, 0)))[:3]
        if count > 0:
            metrics[f"{name}_mae"] = abs_sum / count
            metrics[f"{name}_rmse"] = (sq_sum / count) ** 0.5
    return metrics
