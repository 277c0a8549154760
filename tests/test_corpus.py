"""Corpus reading, encoding into (ids, pos) chunks, and deterministic splits."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st

import saffu.corpus as corpus_module
from conftest import tiny_documents
from saffu.corpus import (
    BLANK_LINES,
    Corpus,
    TokenizedCorpus,
    count_characters,
    encode_corpus,
    random_split,
    read_documents,
    read_file_documents,
    resolve_paths,
    shakespeare_split,
    split_files,
)
from saffu.datasets import sample, sample_dir
from saffu.tokenize import EOD, SOD, CharTokenizer, count_tokens


def write(folder: Path, files: dict[str, str | bytes]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, content in files.items():
        data = content.encode() if isinstance(content, str) else content
        (folder / name).write_bytes(data)
    return folder


# --- finding and reading files -------------------------------------------------------------------


def test_directory_glob_and_list_sources(tmp_path):
    root = write(tmp_path / "c", {"b.txt": "bee", "a.txt": "ay", "c.md": "sea", "d.txt": ""})
    assert [p.name for p in resolve_paths(root)] == ["a.txt", "b.txt", "d.txt"]
    assert [p.name for p in resolve_paths(root, pattern="*")] == ["a.txt", "b.txt", "c.md",
                                                                  "d.txt"]
    assert [p.name for p in resolve_paths(str(root / "[bc].*"))] == ["b.txt", "c.md"]
    assert [p.name for p in resolve_paths([root / "c.md", root / "a.txt"])] == ["c.md", "a.txt"]
    # an empty file holds no document
    assert list(read_documents(root)) == ["ay", "bee"]


def test_corpus_is_lazy_and_reiterable(tmp_path):
    root = write(tmp_path, {"1.txt": "one", "2.txt": "two"})
    corpus = Corpus(root)
    (root / "1.txt").write_text("changed")  # files are read during iteration, not before
    assert list(corpus) == ["changed", "two"] == list(corpus)


def test_missing_and_empty_sources_are_clear_errors(tmp_path):
    root = write(tmp_path / "c", {"a.md": "x"})
    with pytest.raises(ValueError, match=r"has no files matching '\*\.txt'"):
        Corpus(root)
    with pytest.raises(ValueError, match="matches no files"):
        Corpus(str(tmp_path / "*.csv"))
    with pytest.raises(ValueError, match="list of corpus files is empty"):
        Corpus([])
    with pytest.raises(FileNotFoundError, match="does not exist"):
        Corpus(tmp_path / "absent.txt")
    with pytest.raises(TypeError, match=r"str or os\.PathLike"):
        Corpus([3])


def test_invalid_utf8_names_file_and_byte_offset(tmp_path):
    path = write(tmp_path, {"bad.txt": b"caf\xc3\xa9 ok \xff rest"}) / "bad.txt"
    with pytest.raises(ValueError, match=r"bad\.txt: invalid UTF-8 at byte offset 9"):
        list(read_file_documents(path))
    assert list(read_file_documents(path, errors="replace")) == ["café ok \ufffd rest"]
    with pytest.raises(ValueError, match="errors must be"):
        list(read_file_documents(path, errors="ignore"))


def test_invalid_utf8_offset_across_read_blocks(tmp_path, monkeypatch):
    monkeypatch.setattr(corpus_module, "_BLOCK_BYTES", 4)
    # "é" straddles the first block boundary; the bad byte sits in the third block
    path = write(tmp_path, {"bad.txt": b"abc\xc3\xa9\n\nxy\xfez"}) / "bad.txt"
    with pytest.raises(ValueError, match="byte offset 9"):
        list(read_file_documents(path, separator="\n\n"))
    truncated = write(tmp_path, {"cut.txt": b"abcdef\xe6\x97"}) / "cut.txt"
    with pytest.raises(ValueError, match="byte offset 6"):
        list(read_file_documents(truncated, separator="\n\n"))


def test_byte_order_mark_is_removed(tmp_path):
    path = write(tmp_path, {"bom.txt": b"\xef\xbb\xbfhello\n\nworld"}) / "bom.txt"
    assert list(read_file_documents(path)) == ["hello\n\nworld"]
    assert list(read_file_documents(path, separator="\n\n")) == ["hello", "world"]


def test_separators(tmp_path):
    text = "first doc\nline two\n\n\nsecond\n \t\nthird\n\n"
    path = write(tmp_path, {"d.txt": text}) / "d.txt"
    assert list(read_file_documents(path, separator="\n\n")) == [
        "first doc\nline two", "\nsecond\n \t\nthird"]
    assert list(read_file_documents(path, separator=BLANK_LINES)) == [
        "first doc\nline two", "second", "third"]
    with pytest.raises(ValueError, match="matches the empty string"):
        Corpus(path, separator=re.compile(r"\n*"))


@settings(max_examples=300, deadline=None)
@given(text=st.text(alphabet="ab\n \t\ré", max_size=80), block=st.integers(1, 9))
@example(text="\n\n \na", block=1)  # a separator match that grows as more text arrives
@example(text="a\r\n\r\nb é\n\nc", block=3)  # "\r\n" and "é" straddle read blocks
def test_streamed_split_equals_whole_text_split(tmp_path_factory, text, block):
    lookahead = 4
    assume(max(map(len, re.findall(r"\s+", text)), default=0) <= lookahead)
    path = tmp_path_factory.mktemp("split") / "doc.txt"
    path.write_bytes(text.encode())
    expected = [d for d in BLANK_LINES.split(text) if d and not d.isspace()]
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(corpus_module, "_BLOCK_BYTES", block)
        patch.setattr(corpus_module, "_LOOKAHEAD_CHARS", lookahead)
        assert list(read_file_documents(path, separator=BLANK_LINES)) == expected


def test_count_characters():
    assert count_characters(["ab", "", "日本😀"]) == 5
    with pytest.raises(TypeError, match="document 1"):
        count_characters(["ok", 3])


# --- encoding ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tokenizer() -> CharTokenizer:
    return CharTokenizer().fit(tiny_documents(30))


def check_chunks(chunks, documents, tokenizer):
    """Every chunk holds whole documents, framed by sod/eod, with positions 0, 1, 2, …"""
    decoded = []
    for ids, pos in chunks:
        assert ids.dtype == pos.dtype == np.int32 and ids.shape == pos.shape
        starts = np.flatnonzero(pos == 0)
        assert starts[0] == 0 and ids[-1] == EOD
        for start, stop in zip(starts, [*starts[1:], len(ids)], strict=True):
            np.testing.assert_array_equal(pos[start:stop], np.arange(stop - start))
            assert ids[start] == SOD and ids[stop - 1] == EOD
            body = ids[start + 1:stop - 1]
            assert not np.isin(body, [SOD, EOD]).any()
            decoded.append(tokenizer.decode(body))
    assert decoded == list(documents)


def test_encode_corpus_chunks(tokenizer):
    documents = [*tiny_documents(30), "", "日本 😀"]
    chunks = list(encode_corpus(tokenizer, documents, chunk_tokens=200))
    check_chunks(chunks, documents, tokenizer)
    assert len(chunks) > 3
    longest = max(len(doc) for doc in documents) + 2
    assert all(len(ids) <= max(200, longest) for ids, _ in chunks)
    single = list(encode_corpus(tokenizer, documents))
    assert len(single) == 1
    np.testing.assert_array_equal(single[0][0], np.concatenate([ids for ids, _ in chunks]))


def test_a_long_document_forms_its_own_chunk(tokenizer):
    documents = ["short", "x" * 50, "tiny"]
    chunks = list(encode_corpus(tokenizer, documents, chunk_tokens=10))
    assert [len(ids) for ids, _ in chunks] == [7, 52, 6]
    check_chunks(chunks, documents, tokenizer)


def test_encode_corpus_bad_inputs(tokenizer):
    with pytest.raises(ValueError, match="corpus is empty"):
        list(encode_corpus(tokenizer, []))
    with pytest.raises(ValueError, match="chunk_tokens"):
        list(encode_corpus(tokenizer, ["a"], chunk_tokens=0))
    with pytest.raises(TypeError, match="not a single string"):
        list(encode_corpus(tokenizer, "one string"))


def test_tokenized_corpus(tokenizer):
    documents = tiny_documents(30)
    corpus = TokenizedCorpus.from_documents(tokenizer, iter(documents), chunk_tokens=300)
    check_chunks(list(corpus), documents, tokenizer)
    assert list(corpus.chunks())  # a second pass sees the chunks again
    assert len(corpus) > 1
    body_tokens = sum(len(tokenizer.encode(doc)) for doc in documents)
    assert corpus.n_documents == 30
    assert corpus.n_tokens == body_tokens + 2 * 30
    assert corpus.n_targets == body_tokens + 30
    assert corpus.n_characters == sum(len(doc) for doc in documents)
    np.testing.assert_array_equal(corpus.token_counts(tokenizer.vocab_size),
                                  count_tokens(encode_corpus(tokenizer, documents),
                                               tokenizer.vocab_size))


def test_tokenized_corpus_rejects_malformed_chunks():
    ids = np.array([SOD, 5, EOD], dtype=np.int32)
    with pytest.raises(TypeError, match="int32"):
        TokenizedCorpus([(ids.astype(np.int64), np.arange(3, dtype=np.int32))])
    with pytest.raises(ValueError, match="document start"):
        TokenizedCorpus([(ids, np.arange(1, 4, dtype=np.int32))])


def test_encode_a_file_corpus(tmp_path, tokenizer):
    root = write(tmp_path, {"a.txt": "the king\n\nthe queen", "b.txt": "o what a night"})
    corpus = TokenizedCorpus.from_documents(tokenizer, Corpus(root, separator="\n\n"))
    assert corpus.n_documents == 3
    assert corpus.n_characters == len("the king") + len("the queen") + len("o what a night")


# --- splits ------------------------------------------------------------------------------------


def test_split_files(tmp_path):
    root = write(tmp_path, {f"{name}.txt": name for name in "abcdef"})
    split = split_files(root, test=["e.txt", "b.txt"], dev="c.txt")
    assert [p.name for p in split.train] == ["a.txt", "d.txt", "f.txt"]
    assert [p.name for p in split.dev] == ["c.txt"]
    assert [p.name for p in split.test] == ["b.txt", "e.txt"]
    with pytest.raises(ValueError, match=r"test file 'z\.txt' is not in the corpus"):
        split_files(root, test=["z.txt"])
    with pytest.raises(ValueError, match="listed twice"):
        split_files(root, test=["a.txt"], dev=["a.txt"])
    with pytest.raises(ValueError, match="no files are left"):
        split_files(root, test=[f"{name}.txt" for name in "abcdef"])


def test_random_split_is_a_seeded_partition():
    items = [f"document {i}" for i in range(100)]
    split = random_split(items, dev=0.1, test=0.2, seed=3)
    assert (len(split.train), len(split.dev), len(split.test)) == (70, 10, 20)
    assert sorted(split.train + split.dev + split.test) == sorted(items)
    assert list(split.test) == sorted(split.test, key=items.index)  # parts keep input order
    assert random_split(items, dev=0.1, test=0.2, seed=3) == split
    assert random_split(items, dev=0.1, test=0.2, seed=4).test != split.test
    # a path's part depends on its file name and the seed only, not its folder or neighbours
    paths = [Path("/a") / f"{i}.txt" for i in range(50)]
    moved = [Path("/elsewhere") / p.name for p in reversed(paths)]
    assert {p.name for p in random_split(paths, seed=1).test} == \
        {p.name for p in random_split(moved, seed=1).test}
    with pytest.raises(ValueError, match="no items are left"):
        random_split(items[:3], dev=0.5, test=0.5)
    with pytest.raises(ValueError, match="dev fraction"):
        random_split(items, dev=1.5)


def readme_split(readme: Path) -> dict[str, list[str]]:
    """The test and dev file lists of shared/data/README.md."""
    parts = {}
    for line in readme.read_text().splitlines():
        match = re.match(r"- (test|dev): (.*)", line.strip())
        if match:
            parts[match.group(1)] = re.findall(r"`([^`]+)`", match.group(2))
    return parts


@pytest.mark.shared_data
def test_shakespeare_split_matches_the_data_readme(shakespeare_dir):
    listed = readme_split(shakespeare_dir.parent / "README.md")
    split = shakespeare_split(shakespeare_dir)
    assert sorted(p.name for p in split.test) == sorted(listed["test"])
    assert sorted(p.name for p in split.dev) == sorted(listed["dev"])
    every_work = sorted(p.name for p in shakespeare_dir.glob("*_gut.txt"))
    assert len(split.train) == 37 == len(every_work) - len(listed["test"]) - len(listed["dev"])
    assert sorted(p.name for p in split.train + split.dev + split.test) == every_work


def test_bundled_sample():
    data = sample()
    files = data.train + data.dev + data.test
    assert len(set(files)) == len(files) == 6
    assert [p.name for p in data.dev] == ["macbeth_gut.txt"]
    assert [p.name for p in data.test] == ["tempest_gut.txt"]
    assert all(p.parent == sample_dir() and p.is_file() for p in files)
    assert sum(p.stat().st_size for p in files) < 1_000_000
    assert len(list(read_documents(data.train))) == 4
