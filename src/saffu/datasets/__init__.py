"""A small Shakespeare sample shipped with the package, for demos and quick experiments.

Six works in modern spelling (Project Gutenberg, public domain; the same files as in the
project's Shakespeare corpus), about 570 kB, split consistently with the fixed split of that
corpus:

- train: The Comedy of Errors, A Midsummer Night's Dream, The Two Gentlemen of Verona,
  The Rape of Lucrece
- dev: Macbeth
- test: The Tempest

Example::

    from saffu.corpus import read_documents
    from saffu.datasets import sample

    data = sample()
    train_documents = read_documents(data.train)   # one document per work
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from saffu.corpus import Split, split_files

SAMPLE_DEV = ("macbeth_gut.txt",)
SAMPLE_TEST = ("tempest_gut.txt",)


def sample_dir() -> Path:
    """Folder holding the sample's ``*_gut.txt`` files (inside the installed package)."""
    return Path(str(resources.files(__name__).joinpath("data")))


def sample() -> Split[Path]:
    """The bundled sample's files as a :class:`~saffu.corpus.Split` (``train``, ``dev``,
    ``test`` tuples of paths, sorted by name)."""
    return split_files(sample_dir(), test=SAMPLE_TEST, dev=SAMPLE_DEV, pattern="*_gut.txt")
