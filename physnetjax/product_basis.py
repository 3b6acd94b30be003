"""Higher body order from products of one atom's aggregated messages (optional, ``correlation > 1``).

A PhysNet message pass gives every atom i the equivariant features

    A_i = Σ_j tensor(filter(r_ij), x_j),

a sum of one term per neighbour j: a two-body expansion around i (its invariant
part cannot tell a bond angle from its mirror, two neighbours at 1 Å from one at
2 Å only through the non-linear refinement that follows). Following the atomic
cluster expansion (Drautz 2019) and MACE's product basis (Batatia et al. 2022),
the products of A_i with itself are sums over tuples of neighbours::

    B_i^(1) = A_i
    B_i^(ν) = tensor(Dense(B_i^(ν−1)), A_i),      ν = 2 … correlation,

so B^(ν) holds (ν+1)-body terms (for ν = 2 and degree 0 out: Σ_m A_{i,lm} A_{i,lm},
the power spectrum of SOAP). The layer returns Σ_ν B^(ν), truncated to the output
degree. ``tensor`` is :class:`~physnetjax.message_pass.SparseTensor` (a channel-wise
Clebsch–Gordan product with a learned weight per degree path and channel) and
``Dense`` an e3x equivariant linear layer mixing the channels before each product.

The cost is per atom, not per edge: small beside the message pass it follows. With
``correlation = 1`` the model contains none of this (PhysNet as published, and every
checkpoint written before the option, unchanged).
"""

from __future__ import annotations

from typing import Any

import e3x
import flax.linen as nn
import jax.numpy as jnp

from physnetjax.message_pass import SparseTensor


class ProductBasis(nn.Module):
    """Σ_{ν=1}^{correlation} B^(ν) of the module docstring, truncated to ``max_degree``.

    Attributes:
      correlation: highest product order ν (≥ 2; body order ν + 1).
      max_degree: degree of the output (intermediate products keep the input's degree).
      dtype: computation dtype (None → the input's).
      param_dtype: dtype of the parameters.

    Input (N, 1, (L+1)², F) without pseudotensors; output (N, 1, (max_degree+1)², F).
    """

    correlation: int
    max_degree: int
    dtype: Any = None
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, messages):
        if self.correlation < 2:
            raise ValueError(f"ProductBasis needs correlation >= 2, received {self.correlation}")
        input_degree = round(messages.shape[-2] ** 0.5) - 1
        if self.max_degree > input_degree:
            raise ValueError(f"output degree {self.max_degree} exceeds the input's {input_degree}")
        features = messages.shape[-1]
        total = e3x.nn.change_max_degree_or_type(messages, max_degree=self.max_degree, include_pseudotensors=False)
        product = messages
        for order in range(2, self.correlation + 1):
            degree = self.max_degree if order == self.correlation else input_degree
            mixed = e3x.nn.Dense(features, use_bias=False, dtype=self.dtype, param_dtype=self.param_dtype,
                                 name=f"mix_{order}")(product)
            product = SparseTensor(max_degree=degree, dtype=self.dtype, param_dtype=self.param_dtype,
                                   name=f"product_{order}")(mixed, messages)
            total = e3x.nn.add(total, e3x.nn.change_max_degree_or_type(
                product, max_degree=self.max_degree, include_pseudotensors=False))
        return total
