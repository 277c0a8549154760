"""Plain NumPy reference kernels: the oracle the tests hold the fast backends to."""

from saffu._reference import cooc, generate, output, pretokenize, saffu_pass

KERNEL_MODULES = (cooc, output, pretokenize, saffu_pass, generate)
"""Where ``saffu._backend`` finds each kernel of ``saffu._kernel_spec.KERNELS``."""
