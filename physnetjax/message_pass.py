"""Message passing with a factored basis and a sparse Clebsch–Gordan tensor product.

Drop-in for e3x's ``MessagePass`` (same parameters, same results to float rounding),
restructured for speed in two ways.

Factored filter. e3x's basis is an outer product b[p, c, k] = Y_c(û_p) g_k(r_p) of
spherical harmonics (component c, degree deg c) and radial functions (k), and its
``filter`` is a per-degree Dense over k: f[p, c, :] = Σ_k b[p, c, k] W_{deg c}[k, :].
So f[p, c, :] = Y_c(û_p) · (g(r_p) W_{deg c}), computed here as one radial matrix
product with the kernels of all components side by side and one broadcast multiply,
without ever forming b (P × (L+1)² × K) or its gradient (:class:`RadialFilter`,
:func:`edge_basis_factors`); the spherical harmonics are explicit polynomials
(:mod:`physnetjax.spherical_harmonics`).

Sparse tensor product. e3x's ``Tensor`` contracts the full Clebsch–Gordan tensor C[l, m, n] of shape
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

import functools
from typing import Any

import e3x
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from physnetjax.spherical_harmonics import spherical_harmonics


def _degree_of_component(num_components: int) -> np.ndarray:
    """deg of each spherical-harmonic component index 0 … (L+1)² − 1 (component k has deg ⌊√k⌋)."""
    return np.floor(np.sqrt(np.arange(num_components) + 0.5)).astype(int)


@functools.lru_cache(maxsize=None)
def sparse_coupling_paths(max_degree1: int, max_degree2: int, max_degree3: int, cartesian_order: bool = True):
    """The non-zero, parity-allowed Clebsch–Gordan paths grouped by output component.

    Returns (first, second, coefficient, degrees), each of shape ((L3+1)², K): for output
    component n, the paths k = 0 … K−1 couple input components first[n, k] and
    second[n, k] with Clebsch–Gordan coefficient ``coefficient[n, k]``; ``degrees[n, k]``
    is the (deg l, deg m, deg n) triple as one flat index into the kernel's
    (L1+1, L2+1, L3+1) degree block. Output components with fewer than K paths are
    padded with coefficient 0 (contributing exactly 0). Cached: every layer and every
    trace of the same degrees shares one (read-only) result.
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
    for array in (first, second, coefficient, degrees):
        array.flags.writeable = False
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
        # Terms added explicitly: XLA CPU sends a reduce over a short middle axis to a library
        # kernel that is ~50× slower than a fused loop. Paths whose index columns are slices or
        # broadcasts go column by column; any other column would be a gather whose gradient
        # is a (slow) scatter, so those paths go output by output over components split once.
        if all(_is_slice_or_broadcast(column) for column in (*first.T, *second.T)):
            products = sum(_components(a, first[:, k]) * _components(b, second[:, k]) * coupling[:, k]
                           for k in range(first.shape[1]))
        else:
            a_parts = [part[..., 0, :] for part in jnp.split(a, a.shape[-2], axis=-2)]
            b_parts = [part[..., 0, :] for part in jnp.split(b, b.shape[-2], axis=-2)]
            products = jnp.stack([sum(a_parts[first[n, k]] * b_parts[second[n, k]] * coupling[n, k]
                                      for k in range(first.shape[1]) if coefficient[n, k] != 0)
                                  for n in range(first.shape[0])], axis=-2)
        return products[..., None, :, :]


def _is_slice_or_broadcast(index: np.ndarray) -> bool:
    """Whether a static 1-D component index is a leading slice (0 … n−1) or one repeated component."""
    return np.array_equal(index, np.arange(len(index))) or bool(np.all(index == index[0]))


def _components(x, index: np.ndarray):
    """x[..., index, :] for a static index that :func:`_is_slice_or_broadcast`, without a gather.

    PhysNet's default layers couple each component with itself (index 0 … n−1) or with the
    scalar (index all 0); skipping XLA's constant-index gather there saves ~5 % of an ethanol
    MD step. Other paths are built from split components in :class:`SparseTensor`.
    """
    if np.array_equal(index, np.arange(len(index))):
        return x if len(index) == x.shape[-2] else x[..., :len(index), :]
    return jnp.broadcast_to(x[..., index[0]:index[0] + 1, :], x.shape[:-2] + (len(index), x.shape[-1]))


def edge_basis_factors(displacements, edge_mask, *, num: int, max_degree: int, cutoff: float):
    """Factors of e3x's radial–angular basis: (angular (P, (L+1)²), radial (P, K)).

    angular[p, c] = Y_c(r̂_p), real spherical harmonics with Racah normalisation in
    e3x's Cartesian order; radial[p, k] = T_k(2 e^{−r_p} − 1) · f_cut(r_p / r_c), the
    exponential Chebyshev functions (k = 0 … K−1, :func:`chebyshev_polynomials`) times
    e3x's smooth cutoff f_cut(x) = exp(1 − 1/(1 − x²)) for x < 1, else 0; r in Å. The
    outer product angular[p, c] · radial[p, k] equals ``e3x.nn.basis(displacements,
    num=K, max_degree=L, radial_fn=exponential_chebyshev, cutoff_fn=smooth_cutoff)`` to
    float rounding (the harmonics from :func:`physnetjax.spherical_harmonics.spherical_harmonics`,
    which XLA fuses into one kernel). Masked edges get radial = 0.
    """
    norm = e3x.ops.norm(displacements, axis=-1)
    unit = displacements / jnp.where(norm > 0, norm, 1.0)[..., None]
    angular = spherical_harmonics(unit, max_degree)
    cut = e3x.nn.smooth_cutoff(norm, cutoff=cutoff)
    radial = chebyshev_polynomials(2.0 * jnp.exp(-norm) - 1.0, num) * cut[..., None]
    dtype = displacements.dtype
    return angular.astype(dtype), jnp.where(edge_mask[..., None], radial.astype(dtype), 0.0)


def chebyshev_polynomials(x, num: int):
    """T_0(x) … T_{num−1}(x) (shape x.shape + (num,)) by the recurrence T_{k+1} = 2x T_k − T_{k−1}.

    Equal to e3x's cos(k arccos x) on [−1, 1] (forward error ≲ k² ε), but a polynomial:
    no arccos, no special cases at x = ±1, and a cheap exact derivative (the force pass
    of the radial basis was ~3× slower with the trigonometric form).
    """
    terms = [jnp.ones_like(x), x][:num]
    while len(terms) < num:
        terms.append(2.0 * x * terms[-1] - terms[-2])
    return jnp.stack(terms, axis=-1)


class RadialFilter(nn.Module):
    """e3x's ``filter`` Dense applied to a factored basis: f[p, 0, c, :] = Y_c(p) · (g(p) W_{deg c}).

    Parameters are e3x ``Dense``'s: one bias-free kernel (K, F) per degree l, in a
    sub-module named ``f"{l}+"`` (even l) or ``f"{l}-"`` (odd l) as ``flax.linen.Dense``
    names it, same initialiser. The kernels are laid side by side per component,
    W_all = [W_{deg 0} | W_{deg 1} | … ] of shape (K, (L+1)² F), so the filter is one
    matrix product g W_all (forward and backward: one kernel each way instead of L+1
    products, their concatenation and a reduction over the 2l+1 copies).

    With ``hidden_features`` H set, the radial functions first pass through a two-layer
    perceptron without biases, g ← silu(silu(g W₁) W₂) (W₁: K × H, W₂: H × H; sub-modules
    ``radial_mlp_0``/``_1``), as MACE's radial network: still 0 where g = 0 (beyond the
    cutoff, masked edges) and as smooth as g at the cutoff; the per-degree kernels are then
    (H, F). Without it (None) the filter is e3x's, linear in g.

    Inputs: angular (P, (L+1)²), radial (P, K). Output (P, 1, (L+1)², F).
    """

    features: int
    kernel_init: Any = nn.linear.default_kernel_init
    dtype: Any = None
    param_dtype: Any = jnp.float32
    hidden_features: int | None = None

    @nn.compact
    def __call__(self, angular, radial):
        if self.hidden_features is not None:
            for layer in range(2):
                radial = nn.silu(nn.Dense(self.hidden_features, use_bias=False, dtype=self.dtype,
                                          param_dtype=self.param_dtype, name=f"radial_mlp_{layer}")(radial))
        num_components, num_radial = angular.shape[-1], radial.shape[-1]
        max_degree = round(num_components ** 0.5) - 1
        kernels = [_DenseKernel((num_radial, self.features), self.kernel_init, self.param_dtype,
                                name=f"{degree}{'+-'[degree % 2]}")() for degree in range(max_degree + 1)]
        dtype = self.dtype or jnp.result_type(radial, kernels[0])
        kernel_all = jnp.stack([kernels[degree] for degree in _degree_of_component(num_components)], axis=1)
        filters = jnp.dot(radial.astype(dtype), kernel_all.reshape(num_radial, -1).astype(dtype))
        filters = filters.reshape(radial.shape[:-1] + (num_components, self.features))
        return (angular[..., :, None].astype(dtype) * filters)[..., None, :, :]


class _DenseKernel(nn.Module):
    """The ``kernel`` parameter of a bias-free ``flax.linen.Dense`` (same name, shape, initialiser), as is."""

    shape: tuple[int, int]
    kernel_init: Any
    param_dtype: Any

    @nn.compact
    def __call__(self):
        return self.param("kernel", self.kernel_init, self.shape, self.param_dtype)


class SparseMessagePass(nn.Module):
    """``e3x.nn.MessagePass(include_pseudotensors=False)`` with :class:`RadialFilter` and :class:`SparseTensor`.

    m_i = Σ_{j: (i←j)} tensor(filter(b_ij), x_j), summed onto the destination atoms,
    with the basis b given by its factors (angular (P, (L+1)²), radial (P, K)) of
    :func:`edge_basis_factors`. Same parameter names, shapes and initialisers as e3x's
    layer applied to the full basis.

    ``basis`` is either the factor pair of all edges, or a function
    ``basis(edges) -> (angular, radial)`` of per-edge data ``edges`` (a pytree of arrays
    with leading axis P, e.g. displacement vectors and the edge mask). With a function
    and ``edge_chunk_size`` set, the edges are processed in chunks of at most that many
    (equal chunks, the last padded; all at once when P ≤ edge_chunk_size) inside a
    ``lax.scan`` whose body is rematerialised (``jax.checkpoint``), so neither the basis
    nor any per-edge feature is ever stored for all P edges: memory is O(N + chunk)
    instead of O(P) per layer, forward and backward. Chunk padding edges take part with
    index 0 and must get a zero radial factor from ``basis`` through their ``edges``
    entries (PhysNet pads with a False edge mask).

    Attributes:
      max_degree: output degree (None → max of the input and basis degrees).
      edge_chunk_size: edges per chunk, or None for all edges at once.
      radial_hidden_features: width of :class:`RadialFilter`'s radial perceptron (None: linear filter).
    """

    max_degree: int | None = None
    edge_chunk_size: int | None = None
    dtype: Any = None
    param_dtype: Any = jnp.float32
    radial_hidden_features: int | None = None

    @nn.compact
    def __call__(self, inputs, basis, *, dst_idx, src_idx, num_segments, edges=None, pad_edges=None):
        """Messages (N, 1, (L_out+1)², F) summed onto ``num_segments`` destination atoms.

        ``pad_edges``: the per-edge data of one padding edge (same pytree as ``edges``,
        without the leading axis), used to fill the last chunk.
        """
        defaults = e3x.nn.MessagePass()
        filter_layer = RadialFilter(features=inputs.shape[-1], kernel_init=defaults.dense_kernel_init,
                                    dtype=self.dtype, param_dtype=self.param_dtype,
                                    hidden_features=self.radial_hidden_features, name="filter")
        tensor_layer = SparseTensor(max_degree=self.max_degree, cartesian_order=defaults.cartesian_order,
                                    dtype=self.dtype, param_dtype=self.param_dtype, name="tensor")
        num_edges = dst_idx.shape[0]
        chunked = callable(basis) and self.edge_chunk_size is not None and num_edges > self.edge_chunk_size
        if callable(basis) and edges is None:
            raise ValueError("a basis function needs the per-edge data `edges`")
        if not chunked:
            angular, radial = basis(edges) if callable(basis) else basis
            products = tensor_layer(filter_layer(angular, radial), inputs[src_idx])
            return jax.ops.segment_sum(products, dst_idx, num_segments=num_segments)
        if pad_edges is None:
            raise ValueError("edge_chunk_size needs `pad_edges`, the data of a padding edge")

        # Create (init) or fetch (apply) the parameters on one edge, then use the layers as
        # pure functions inside the scan (Flax modules cannot be called inside lax.scan).
        one_edge = jax.tree_util.tree_map(lambda a: a[:1], edges)
        tensor_layer(filter_layer(*basis(one_edge)), inputs[src_idx[:1]])
        layer_params = ({"params": filter_layer.variables["params"]}, {"params": tensor_layer.variables["params"]})
        filter_fn, tensor_fn = filter_layer.clone(parent=None, name=None), tensor_layer.clone(parent=None, name=None)

        # Equal chunks of at most edge_chunk_size edges; fewer than num_chunks padding edges.
        num_chunks = -(-num_edges // self.edge_chunk_size)
        chunk = -(-num_edges // num_chunks)
        padding = num_chunks * chunk - num_edges

        def split(a, fill):
            a = jnp.concatenate([a, jnp.broadcast_to(jnp.asarray(fill, a.dtype), (padding,) + a.shape[1:])])
            return a.reshape((num_chunks, chunk) + a.shape[1:])

        edge_chunks = jax.tree_util.tree_map(split, edges, pad_edges)
        dst_chunks, src_chunks = split(dst_idx, 0), split(src_idx, 0)

        @jax.checkpoint
        def chunk_messages(layer_params, x, edge_chunk, dst, src):
            filters = filter_fn.apply(layer_params[0], *basis(edge_chunk))
            products = tensor_fn.apply(layer_params[1], filters, x[src])
            return jax.ops.segment_sum(products, dst, num_segments=num_segments)

        def accumulate(total, chunk_data):
            return total + chunk_messages(layer_params, inputs, *chunk_data), None

        first_chunk = jax.tree_util.tree_map(lambda a: a[0], (edge_chunks, dst_chunks, src_chunks))
        shape = jax.eval_shape(chunk_messages, layer_params, inputs, *first_chunk)
        total, _ = jax.lax.scan(accumulate, jnp.zeros(shape.shape, shape.dtype),
                                (edge_chunks, dst_chunks, src_chunks))
        return total
