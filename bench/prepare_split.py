"""Fit the BPE tokenizer on the Shakespeare train split and cache the encoded train and dev
splits in bench/out/split (for bench/skip_inputs.py; the test split is not encoded)."""
from pathlib import Path

from saffu.config import SaffuConfig
from saffu.corpus import read_documents, shakespeare_split
from saffu.sweep.data import prepare_data

split = shakespeare_split(Path(__file__).resolve().parents[1].parent / "shared" / "data" / "shakespeare")
docs = {n: list(read_documents(getattr(split, n))) for n in ("train", "dev")}
prepare_data(Path(__file__).parent / "out" / "split", docs, SaffuConfig(), verbose=1)
