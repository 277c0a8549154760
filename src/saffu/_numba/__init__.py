"""Numba implementations of the kernels (same signatures as ``saffu._core``)."""

import numba  # noqa: F401  (ImportError here marks the backend unavailable)

from saffu._numba import cooc, generate, output, pretokenize, saffu_pass

KERNEL_MODULES = (cooc, output, pretokenize, saffu_pass, generate)
"""Where ``saffu._backend`` finds each kernel of ``saffu._kernel_spec.KERNELS``."""
