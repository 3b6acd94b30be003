"""Message passing with a sparse Clebsch–Gordan tensor product (drop-in for e3x's layers).

e3x's ``Tensor`` contracts the full Clebsch–Gordan tensor C[l, m, n] of shape
((L1+1)², (L2+1)², (L3+1)²) in one dense einsum. Most of C is zero and, for inputs
without pseudotensors, parity forbids every path with deg l + deg m + deg n odd, so
only a few entries contribute (16 of 256 for L1 = 3, L2 = 0 → L3 = 3; 353 of 4096
for 3 ⊗ 3 → 3). :class:`SparseTensor` evaluates just those terms::

    y[..., n, f] = Σ_{(l, m): C[l, m, n] ≠ 0, parity allowed}
                   C[l, m, n] · K[deg l, deg m, deg n, f] · a[..., l, f] · b[..., m, f]

with the kernel K stored exactly as e3x stores it (name ``kernel``, shape
(1, L1+1, 1, L2+1, 1, L3+1, F), same initialiser), so parameter trees, including
those of legacy checkpoints, are interchangeable with e3x's. The result equals
e3x's to float rounding (tested in ``tests/test_message_pass.py``).
"""

from __future__ import annotations

from typing import Any

import e3x
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np


def _degree_of_component(num_components: int) -> np.ndarray:
    """deg of each spherical-harmonic component index 0 … (L+1)² − 1 (component k has deg ⌊√k⌋)."""
    return np.floor(np.sqrt(np.arange(num_components) + 0.5)).astype(int)


def sparse_coupling_paths(max_degree1: int, max_degree2: int, max_degree3: int, cartesian_order: bool = True):
    """The non-zero, parity-allowed Clebsch–Gordan paths grouped by output component.

    Returns (first, second, coefficient, degrees), each of shape ((L3+1)², K): for output
    component n, the paths k = 0 … K−1 couple input components first[n, k] and
    second[n, k] with Clebsch–Gordan coefficient ``coefficient[n, k]``; ``degrees[n, k]``
    is the (deg l, deg m, deg n) triple as one flat index into the kernel's
    (L1+1, L2+1, L3+1) degree block. Output components with fewer than K paths are
    padded with coefficient 0 (contributing exactly 0).
    """
    cg = np.asarray(e3x.so3.clebsch_gordan(max_degree1, max_degree2, max_degree3, cartesian_order=cartesian_order),
                    dtype=np.float64)
    deg1, deg2, deg3 = (_degree_of_component(n) for n in cg.shape)
    allowed = (deg1[:, None, None] + deg2[None, :, None] + deg3[None, None, :]) % 2 == 0
    cg = np.where(allowed, cg, 0.0)
    num_out = cg.shape[2]
    per_output = [np.nonzero(cg[:, :, n]) for n in range(num_out)]
    width = max(1, max(len(first) for first, _ in per_output))
    first = np.zeros((num_out, width), dtype=np.int32)
    second = np.zeros((num_out, width), dtype=np.int32)
    coefficient = np.zeros((num_out, width), dtype=np.float64)
    degrees = np.zeros((num_out, width), dtype=np.int32)
    for n, (a, b) in enumerate(per_output):
        first[n, : len(a)] = a
        second[n, : len(a)] = b
        coefficient[n, : len(a)] = cg[a, b, n]
        degrees[n, : len(a)] = (deg1[a] * (max_degree2 + 1) + deg2[b]) * (max_degree3 + 1) + deg3[n]
    return first, second, coefficient, degrees


class SparseTensor(nn.Module):
    """e3x ``Tensor(include_pseudotensors=False)`` for inputs without pseudotensors, sparse.

    Attributes:
      max_degree: output degree L3 (None → max(L1, L2), as e3x).
      cartesian_order: Cartesian ordering of the spherical harmonics (e3x default).
      dtype: computation dtype (None → result type of the inputs).
      param_dtype: dtype of the kernel.

    Inputs a (..., 1, (L1+1)², F) and b (..., 1, (L2+1)², F); output (..., 1, (L3+1)², F).
    """

    max_degree: int | None = None
    cartesian_order: bool = True
    dtype: Any = None
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, inputs1, inputs2):
        if inputs1.shape[-3] != 1 or inputs2.shape[-3] != 1:
            raise ValueError(
                f"SparseTensor needs inputs without pseudotensors, received shapes {inputs1.shape}, {inputs2.shape}"
            )
        if inputs1.shape[-1] != inputs2.shape[-1]:
            raise ValueError(f"feature axes differ: {inputs1.shape} and {inputs2.shape}")
        degree1 = round(inputs1.shape[-2] ** 0.5) - 1
        degree2 = round(inputs2.shape[-2] ** 0.5) - 1
        degree3 = max(degree1, degree2) if self.max_degree is None else self.max_degree
        if degree3 > degree1 + degree2:
            raise ValueError(f"output degree {degree3} exceeds {degree1} + {degree2}")
        features = inputs1.shape[-1]
        kernel = self.param("kernel", e3x.nn.modules.default_tensor_kernel_init,
                            (1, degree1 + 1, 1, degree2 + 1, 1, degree3 + 1, features), self.param_dtype)
        dtype = self.dtype or jnp.result_type(inputs1, inputs2)
        first, second, coefficient, degrees = sparse_coupling_paths(degree1, degree2, degree3, self.cartesian_order)
        flat_kernel = kernel.reshape(-1, features).astype(dtype)
        coupling = flat_kernel[degrees] * jnp.asarray(coefficient, dtype=dtype)[..., None]
        a = inputs1[..., 0, :, :].astype(dtype)
        b = inputs2[..., 0, :, :].astype(dtype)
        # One term per path column, added explicitly: XLA CPU sends a reduce over a short
        # middle axis to a library kernel that is ~50× slower than this fused loop.
        products = sum(_components(a, first[:, k]) * _components(b, second[:, k]) * coupling[:, k]
                       for k in range(first.shape[1]))
        return products[..., None, :, :]


def _components(x, index: np.ndarray):
    """x[..., index, :] for a static index array, without a gather where a slice or broadcast does.

    Gathers with constant indices are not fused by XLA on CPU and cost several µs each;
    the identity (a = n) and single-component (m = 0) patterns of PhysNet's layers need none.
    """
    flat = index.reshape(-1)
    if np.array_equal(flat, np.arange(x.shape[-2])):
        return x.reshape(x.shape[:-2] + index.shape + x.shape[-1:])
    if np.all(flat == flat[0]):
        return jnp.broadcast_to(x[..., flat[0]:flat[0] + 1, :].reshape(x.shape[:-2] + (1,) * index.ndim + x.shape[-1:]),
                                x.shape[:-2] + index.shape + x.shape[-1:])
    return x[..., index, :]


class SparseMessagePass(nn.Module):
    """``e3x.nn.MessagePass(include_pseudotensors=False)`` with :class:`SparseTensor`.

    m_i = Σ_{j: (i←j)} tensor(Dense(b_ij), x_j), the Dense acting per degree on the
    radial-angular basis b (e3x's ``filter``), then summed onto the destination atoms.
    Same parameter names, shapes and initialisers as e3x's layer.

    ``basis`` is either the basis array (P, 1, (L+1)², B) of all edges, or a function
    ``basis(edges) -> (p, 1, (L+1)², B)`` of per-edge data ``edges`` (a pytree of
    arrays with leading axis P, e.g. displacement vectors and the edge mask). With a
    function and ``edge_chunk_size`` set, the edges are processed in chunks of that
    many (equal chunks, the last padded; all at once when P ≤ edge_chunk_size) inside
    a ``lax.scan`` whose body is rematerialised (``jax.checkpoint``), so
    neither the basis nor any per-edge feature is ever stored for all P edges: memory
    is O(N + chunk) instead of O(P) per layer, forward and backward. Chunk padding
    edges take part with index 0 and must get a zero basis from ``basis`` through their
    ``edges`` entries (PhysNet pads with a False edge mask).

    Attributes:
      max_degree: output degree (None → max of the input and basis degrees).
      edge_chunk_size: edges per chunk, or None for all edges at once.
    """

    max_degree: int | None = None
    edge_chunk_size: int | None = None
    dtype: Any = None
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, inputs, basis, *, dst_idx, src_idx, num_segments, edges=None, pad_edges=None):
        """Messages (N, 1, (L_out+1)², F) summed onto ``num_segments`` destination atoms.

        ``pad_edges``: the per-edge data of one padding edge (same pytree as ``edges``,
        without the leading axis), used to fill the last chunk.
        """
        defaults = e3x.nn.MessagePass()
        filter_layer = e3x.nn.Dense(features=inputs.shape[-1], use_bias=False, dtype=self.dtype,
                                    param_dtype=self.param_dtype, kernel_init=defaults.dense_kernel_init,
                                    name="filter")
        tensor_layer = SparseTensor(max_degree=self.max_degree, cartesian_order=defaults.cartesian_order,
                                    dtype=self.dtype, param_dtype=self.param_dtype, name="tensor")
        if not callable(basis):
            products = tensor_layer(filter_layer(basis), inputs[src_idx])
            return jax.ops.segment_sum(products, dst_idx, num_segments=num_segments)
        if edges is None:
            raise ValueError("a basis function needs the per-edge data `edges`")
        num_edges = dst_idx.shape[0]
        if self.edge_chunk_size is None or num_edges <= self.edge_chunk_size:
            products = tensor_layer(filter_layer(basis(edges)), inputs[src_idx])
            return jax.ops.segment_sum(products, dst_idx, num_segments=num_segments)
        if pad_edges is None:
            raise ValueError("edge_chunk_size needs `pad_edges`, the data of a padding edge")

        # Create (init) or fetch (apply) the parameters on one edge, then use the layers as
        # pure functions inside the scan (Flax modules cannot be called inside lax.scan).
        one_edge = jax.tree_util.tree_map(lambda a: a[:1], edges)
        tensor_layer(filter_layer(basis(one_edge)), inputs[src_idx[:1]])
        filter_params = {"params": filter_layer.variables["params"]}
        tensor_params = {"params": tensor_layer.variables["params"]}
        filter_fn, tensor_fn = filter_layer.clone(parent=None, name=None), tensor_layer.clone(parent=None, name=None)

        # Equal chunks of at most edge_chunk_size edges; fewer than num_chunks padding edges.
        num_chunks = -(-num_edges // self.edge_chunk_size)
        chunk = -(-num_edges // num_chunks)
        padding = num_chunks * chunk - num_edges

        def chunked(a, fill):
            a = jnp.concatenate([a, jnp.broadcast_to(jnp.asarray(fill, a.dtype), (padding,) + a.shape[1:])])
            return a.reshape((num_chunks, chunk) + a.shape[1:])

        edge_chunks = jax.tree_util.tree_map(chunked, edges, pad_edges)
        dst_chunks, src_chunks = chunked(dst_idx, 0), chunked(src_idx, 0)

        @jax.checkpoint
        def chunk_messages(layer_params, x, edge_chunk, dst, src):
            filters = filter_fn.apply(layer_params[0], basis(edge_chunk))
            products = tensor_fn.apply(layer_params[1], filters, x[src])
            return jax.ops.segment_sum(products, dst, num_segments=num_segments)

        layer_params = (filter_params, tensor_params)

        def accumulate(total, chunk_data):
            return total + chunk_messages(layer_params, inputs, *chunk_data), None

        first_chunk = jax.tree_util.tree_map(lambda a: a[0], (edge_chunks, dst_chunks, src_chunks))
        shape = jax.eval_shape(chunk_messages, layer_params, inputs, *first_chunk)
        total, _ = jax.lax.scan(accumulate, jnp.zeros(shape.shape, shape.dtype),
                                (edge_chunks, dst_chunks, src_chunks))
        return total
