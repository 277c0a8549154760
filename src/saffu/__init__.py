"""saffu: explicit (closed-form) softmax layers and SAFFU transformer language models.

The names users reach for are importable from here; each is loaded on first use, so
``import saffu`` stays fast (no PyTorch, Dask or scikit-learn until a name needs them)::

    from saffu import SaffuConfig, SaffuModel, read_documents
"""

from __future__ import annotations

import importlib
from typing import Any

from saffu._backend import available_backends, get_backend, set_backend, set_num_threads, show_config
from saffu._version import __version__

_LAZY = {
    "SaffuConfig": "saffu.config",
    "SaffuModel": "saffu.model",
    "ExplicitSoftmaxClassifier": "saffu.classify",
    "ExplicitLayer": "saffu.explicit",
    "ExplicitStats": "saffu.explicit",
    "Cipher": "saffu.cipher",
    "Tokenizer": "saffu.tokenize",
    "BPETokenizer": "saffu.tokenize",
    "CharTokenizer": "saffu.tokenize",
    "WordTokenizer": "saffu.tokenize",
    "make_tokenizer": "saffu.tokenize",
    "read_documents": "saffu.corpus",
    "shakespeare_split": "saffu.corpus",
    "TokenizedCorpus": "saffu.corpus",
    "NgramModel": "saffu.ngram",
    "SaffuError": "saffu.errors",
    "to_onnx": "saffu.export",
}

__all__ = [
    "__version__",
    "available_backends",
    "get_backend",
    "set_backend",
    "set_num_threads",
    "show_config",
    *_LAZY,
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'saffu' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
