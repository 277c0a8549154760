"""The data every variant of a sweep shares: one tokenizer and the encoded splits, cached on disk."""


from __future__ import annotations

import contextlib
import hashlib
import io
import itertools
import json
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from saffu._io import atomic_write_bytes, atomic_write_text
from saffu.corpus import TokenizedCorpus
from saffu.errors import InvalidParameterError
from saffu.model import SaffuConfig
from saffu.tokenize import Tokenizer, make_tokenizer

FORMAT = "saffu-sweep"
FORMAT_VERSION = 1
SPLITS = ("train", "dev", "test")
MANIFEST = "sweep.json"


@dataclass
class SweepData:
    """The tokenizer and the encoded splits that every variant of a sweep uses.

    Attributes:
        tokenizer: fitted on the train documents.
        splits: "train", "dev" and (optionally) "test" corpora, encoded with ``tokenizer``.
    """

    tokenizer: Tokenizer
    splits: dict[str, TokenizedCorpus]

    TOKENIZER_FILE = "tokenizer.json"
    DATA_FILE = "data.npz"

    def save(self, directory: Path) -> None:
        """Write ``tokenizer.json`` and ``data.npz`` (per split: ids, pos, chunk offsets,
        characters), each atomically."""
        arrays = {}
        for name, corpus in self.splits.items():
            chunks = list(corpus.chunks())
            arrays[f"{name}.ids"] = np.concatenate([ids for ids, _ in chunks])
            arrays[f"{name}.pos"] = np.concatenate([pos for _, pos in chunks])
            arrays[f"{name}.offsets"] = np.cumsum([0] + [len(ids) for ids, _ in chunks[:-1]])
            arrays[f"{name}.characters"] = np.array(corpus.n_characters)
        buffer = io.BytesIO()
        np.savez(buffer, **arrays)
        atomic_write_bytes(directory / self.DATA_FILE, buffer.getvalue())
        self.tokenizer.save(directory / self.TOKENIZER_FILE)

    @classmethod
    def load(cls, directory: Path) -> SweepData:
        tokenizer = Tokenizer.load(directory / cls.TOKENIZER_FILE)
        splits = {}
        with np.load(directory / cls.DATA_FILE) as arrays:
            for name in SPLITS:
                if f"{name}.ids" not in arrays:
                    continue
                ids, pos = arrays[f"{name}.ids"], arrays[f"{name}.pos"]
                bounds = [*arrays[f"{name}.offsets"].tolist(), len(ids)]
                chunks = [(ids[a:b], pos[a:b]) for a, b in itertools.pairwise(bounds)]
                splits[name] = TokenizedCorpus(chunks, n_characters=int(arrays[f"{name}.characters"]))
        return cls(tokenizer, splits)

    def summary(self) -> dict[str, dict[str, int]]:
        return {name: {"documents": c.n_documents, "tokens": c.n_tokens, "targets": c.n_targets,
                       "characters": c.n_characters} for name, c in self.splits.items()}


def _fingerprint(documents: dict[str, list[str]], tokenizer: str, vocab_size: int) -> str:
    """SHA-256 of the tokenizer settings and every split's documents."""
    digest = hashlib.sha256(f"{tokenizer}\0{vocab_size}".encode())
    for name, docs in documents.items():
        digest.update(f"\0{name}\0{len(docs)}".encode())
        for document in docs:
            digest.update(f"\0{len(document)}\0".encode())
            digest.update(document.encode("utf-8", "surrogatepass"))
    return digest.hexdigest()


def _read_json(path: Path) -> dict[str, Any]:
    try:
        value = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise InvalidParameterError(f"{path} is corrupted: {error}") from None
    if not isinstance(value, dict):
        raise InvalidParameterError(f"{path} is corrupted: not a JSON object")
    return value


def is_sweep_directory(directory: Path) -> bool:
    """Whether ``directory`` is a sweep's output folder (saffu writes ``sweep.json`` first)."""
    return (directory / MANIFEST).is_file()


def prepare_data(directory: Path, documents: dict[str, list[str]], reference: SaffuConfig,
                 verbose: int = 1) -> SweepData:
    """The sweep's data in ``directory``: reused if it was prepared from the same documents,
    otherwise built (tokenizer fitted on train, every split encoded) and cached there.

    Raises:
        ValueError: ``directory`` holds a sweep of other documents or another tokenizer.
    """
    fingerprint = _fingerprint(documents, reference.tokenizer, reference.vocab_size)
    manifest_path = directory / MANIFEST
    if manifest_path.is_file():
        if _read_json(manifest_path).get("fingerprint") != fingerprint:
            raise InvalidParameterError(f"{directory} holds a sweep of other documents or another "
                                        "tokenizer; choose another --out")
        with contextlib.suppress(OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
            return SweepData.load(directory)  # else rebuilt below
    _log(verbose, f"fitting the {reference.tokenizer} tokenizer ({reference.vocab_size} ids) and "
                  "encoding the corpus")
    tokenizer = make_tokenizer(reference.tokenizer, vocab_size=reference.vocab_size)
    tokenizer.fit(documents["train"])
    data = SweepData(tokenizer, {name: TokenizedCorpus.from_documents(tokenizer, docs)
                                 for name, docs in documents.items()})
    directory.mkdir(parents=True, exist_ok=True)
    # The manifest first: it marks the folder as a sweep's (a rerun after a kill rebuilds the data).
    atomic_write_text(manifest_path, json.dumps(
        {"format": FORMAT, "format_version": FORMAT_VERSION, "fingerprint": fingerprint,
         "tokenizer": reference.tokenizer, "vocab_size": reference.vocab_size,
         "splits": data.summary()}, indent=2) + "\n")
    data.save(directory)
    return data


def _log(verbose: int, message: str) -> None:
    if verbose:
        print(f"saffu sweep: {message}", file=sys.stderr, flush=True)
