"""saffu: explicit (closed-form) softmax layers and SAFFU transformer language models."""

from saffu._backend import available_backends, get_backend, set_backend, set_num_threads, show_config
from saffu._version import __version__

__all__ = [
    "__version__",
    "available_backends",
    "get_backend",
    "set_backend",
    "set_num_threads",
    "show_config",
]
