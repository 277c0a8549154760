"""The documentation site (mkdocs.yml) builds with warnings as errors: every docstring of the
rendered API parses, names only parameters its function has, and every Sphinx role in saffu's
docstrings names something that exists; a second build of a small module shows that such drift
does fail the build."""

from __future__ import annotations

import html
import subprocess
import sys
from pathlib import Path

import pytest

from saffu.config import SaffuConfig

ROOT = Path(__file__).resolve().parents[1]

pytestmark = [
    pytest.mark.skipif(not (ROOT / "mkdocs.yml").is_file(), reason="needs the source tree"),
]


def _build(config: Path, site: Path) -> subprocess.CompletedProcess:
    """``mkdocs build --strict`` of ``config`` into ``site``, from the repository root (the
    snippets of docs/index.md and the griffe extension are found from there)."""
    pytest.importorskip("mkdocstrings_handlers.python", reason="pip install '.[docs]'")
    command = [sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(config), "-d", str(site)]
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_the_site_builds_strictly_with_the_api_reference(tmp_path):
    result = _build(ROOT / "mkdocs.yml", tmp_path / "site")
    assert result.returncode == 0, result.stderr[-5000:]
    model = (tmp_path / "site" / "reference" / "model" / "index.html").read_text()
    assert 'id="saffu.model.SaffuModel.fit"' in model and 'id="saffu.config.SaffuConfig"' in model
    assert html.escape(SaffuConfig.help("skip"), quote=False) in model   # the fields' help texts
    sweep = (tmp_path / "site" / "reference" / "sweep" / "index.html").read_text()
    assert 'href="#saffu.sweep.run_sweep"' in sweep and ":func:" not in sweep
    home = (tmp_path / "site" / "index.html").read_text()
    assert "Without a C++ compiler" in home   # the README's sections, included


def _drifted_site(tmp_path: Path, docstring: str) -> Path:
    """A copy of mkdocs.yml that documents one module, ``drifted``, whose function ``f(a)`` has
    ``docstring``."""
    yaml = pytest.importorskip("yaml")
    (tmp_path / "src").mkdir()
    source = f'def f(a: int) -> int:\n    """{docstring}"""\n    return a\n'
    (tmp_path / "src" / "drifted.py").write_text(source)
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "index.md").write_text("# Drifted\n\n::: drifted\n")
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text())
    config.update(docs_dir=str(tmp_path / "docs"), nav=["index.md"])
    plugin = next(p["mkdocstrings"] for p in config["plugins"] if isinstance(p, dict) and "mkdocstrings" in p)
    python = plugin["handlers"]["python"]
    python["paths"] = [str(tmp_path / "src")]
    python["options"]["extensions"] = [str(ROOT / extension) for extension in python["options"]["extensions"]]
    (tmp_path / "mkdocs.yml").write_text(yaml.safe_dump(config))
    return tmp_path / "mkdocs.yml"


@pytest.mark.parametrize(("docstring", "message"), [
    ("Add one.\n\n    Args:\n        a: a number.\n", None),
    ("Add one.\n\n    Args:\n        b: a number.\n", "Parameter 'b' does not appear in the function"),
    ("Add one, like :func:`g`.", ":func:`g` names nothing that exists"),
])
def test_a_docstring_that_drifts_from_the_code_fails_the_build(tmp_path, docstring, message):
    result = _build(_drifted_site(tmp_path, docstring), tmp_path / "site")
    if message is None:
        assert result.returncode == 0, result.stderr[-3000:]
    else:
        assert result.returncode != 0 and message in result.stderr
