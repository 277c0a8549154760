"""Plain NumPy reference kernels: the oracle the tests hold the fast backends to."""

from saffu._reference import cooc, output, saffu_pass

KERNEL_MODULES = (cooc, output, saffu_pass)
"""Where ``saffu._backend`` finds each kernel of ``saffu._kernel_spec.KERNELS``."""
