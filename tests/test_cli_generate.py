"""``saffu generate``: streaming, --prompts files, --json lines, Ctrl-C, bad prompt files."""

from __future__ import annotations

import json
import re

import pytest

from saffu.cli import generate as generate_cli
from saffu.cli import main
from saffu.model import SaffuModel
from test_cli import fit_small, write_tiny_corpus

SETTINGS = ["--max-tokens", "40", "--seed", "3", "--top-k", "6"]
PROMPTS = ["the king", "", "o what a night", "a"]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    root = write_tiny_corpus(tmp_path_factory.mktemp("generate"))
    return fit_small(root, root / "model")


@pytest.fixture(scope="module")
def model(model_dir):
    return SaffuModel.load(model_dir)


def run(capsys, argv):
    capsys.readouterr()
    status = main(argv)
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def test_the_streamed_text_is_the_apis(capsys, model_dir, model):
    status, out, _ = run(capsys, ["generate", str(model_dir), "--prompt", "the", *SETTINGS])
    assert status == 0
    assert out == "the" + model.generate("the", max_tokens=40, seed=3, top_k=6) + "\n"


def test_json_is_one_object(capsys, model_dir, model):
    status, out, _ = run(capsys, ["generate", str(model_dir), "--prompt", "the", *SETTINGS, "--json"])
    assert status == 0
    assert json.loads(out) == {"prompt": "the",
                               "text": model.generate("the", max_tokens=40, seed=3, top_k=6)}


def test_prompts_give_one_continuation_per_line(capsys, tmp_path, model_dir, model):
    path = tmp_path / "prompts.txt"
    path.write_text("\n".join(PROMPTS) + "\n")
    status, out, _ = run(capsys, ["generate", str(model_dir), "--prompts", str(path), *SETTINGS])
    assert status == 0
    expected = model.generate(PROMPTS, max_tokens=40, seed=3, top_k=6)
    assert out.split("\n")[:-1] == [generate_cli.one_line(text) for text in expected]
    assert expected == [model.generate(p, max_tokens=40, seed=3 + i, top_k=6)
                        for i, p in enumerate(PROMPTS)]


def test_prompts_with_json_give_json_lines(capsys, tmp_path, model_dir, model):
    path = tmp_path / "prompts.txt"
    path.write_bytes("\r\n".join(PROMPTS).encode())  # CRLF, no final line break
    status, out, _ = run(capsys, ["generate", str(model_dir), "--prompts", str(path), *SETTINGS,
                                  "--json"])
    assert status == 0
    lines = [json.loads(line) for line in out.splitlines()]
    assert [line["prompt"] for line in lines] == PROMPTS
    assert [line["text"] for line in lines] == model.generate(PROMPTS, max_tokens=40, seed=3, top_k=6)


def test_one_line_escapes_line_breaks():
    assert generate_cli.one_line("a\nb\\n\r") == "a\\nb\\\\n\\r"


@pytest.mark.parametrize("content, message", [
    (None, "--prompts .*: No such file"),
    (b"", "--prompts .* is empty"),
    (b"fine\n\xff\xfe bad\n", "--prompts .* is not valid UTF-8 \\(byte 5"),
])
def test_bad_prompt_files_give_one_line_errors(capsys, tmp_path, model_dir, content, message):
    path = tmp_path / "prompts.txt"
    if content is not None:
        path.write_bytes(content)
    status, out, err = run(capsys, ["generate", str(model_dir), "--prompts", str(path)])
    assert status == 2 and out == ""
    assert len(err.strip().splitlines()) == 1
    assert re.search(message, err), err


def test_prompt_and_prompts_together_are_refused(capsys, tmp_path, model_dir):
    path = tmp_path / "prompts.txt"
    path.write_text("a\n")
    status, _, err = run(capsys, ["generate", str(model_dir), "--prompt", "x", "--prompts", str(path)])
    assert status == 2 and "--prompt or --prompts" in err


def _interrupt_after_one_chunk(monkeypatch):
    real = generate_cli.generate_in_chunks

    def interrupted(*args, **kwargs):
        chunks = real(*args, **kwargs)

        def run():
            yield next(chunks)
            raise KeyboardInterrupt

        return run()

    monkeypatch.setattr(generate_cli, "generate_in_chunks", interrupted)


def test_ctrl_c_prints_what_was_made_and_exits_130(capsys, monkeypatch, model_dir, model):
    _interrupt_after_one_chunk(monkeypatch)
    status, out, err = run(capsys, ["generate", str(model_dir), "--prompt", "the", "--seed", "1",
                                    "--max-tokens", "200", "--temperature", "0.5"])
    assert status == 130 and "interrupted" in err
    first = model.generate("the", max_tokens=generate_cli.STREAM_CHUNK, seed=1, temperature=0.5)
    assert out == "the" + first + "\n"


def test_ctrl_c_with_prompts_prints_every_partial_line(capsys, monkeypatch, tmp_path, model_dir):
    _interrupt_after_one_chunk(monkeypatch)
    path = tmp_path / "prompts.txt"
    path.write_text("\n".join(PROMPTS) + "\n")
    status, out, _ = run(capsys, ["generate", str(model_dir), "--prompts", str(path), "--json",
                                  "--max-tokens", "200", "--seed", "2"])
    assert status == 130
    lines = [json.loads(line) for line in out.splitlines()]
    assert len(lines) == len(PROMPTS) and all(line["interrupted"] for line in lines)
