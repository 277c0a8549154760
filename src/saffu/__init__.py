"""saffu: explicit (closed-form) softmax layers and SAFFU transformer language models."""

from saffu._backend import available_backends, get_backend, set_backend, set_num_threads, show_config

__version__ = "0.1.0"

__all__ = [
    "__version__",
    "available_backends",
    "get_backend",
    "set_backend",
    "set_num_threads",
    "show_config",
]
