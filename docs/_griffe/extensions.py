"""griffe extensions for the docs build: Sphinx roles become links, config fields get their help.

saffu's docstrings name other objects the Sphinx way (``:func:`run_sweep```,
``:class:`~saffu.torch.SaffuModule```); mkdocstrings renders Markdown, where such a role would
show as literal text. This resolves each role's name from the docstring's scope, the way Python
resolves names (a leading ``~`` shows the last name only), and writes a link to it, which stays
plain code when the site does not document that object (a private module, a constant). A name
that resolves to nothing in the source is a warning, so the strict build fails on it.

The fields of SaffuConfig and TrainConfig are written ``name: type = _field(default, "help", ...)``
(``_option`` in TrainConfig); :class:`FieldHelp` documents each field with its help text and
shows its default, as ``SaffuConfig.help(name)`` and the command line do.
"""

from __future__ import annotations

import ast
import html
import re
from collections.abc import Iterator
from typing import Any

import griffe

ROLE = re.compile(r":(?:py:)?(?:func|class|meth|mod|attr|data|exc|obj|const):`(~?)([\w.]+)(\(\))?`")
LITERAL = re.compile(r"(\S?)( ?)::\n(?=\n)")   # "text::" opens an indented literal block in reST


def _full_path(obj: griffe.Object, name: str, collection: griffe.ModulesCollection) -> str | None:
    """The path of ``name`` as the code at ``obj`` would see it, or None if there is none."""
    head, _, rest = name.partition(".")
    candidates = [name]
    try:
        candidates.insert(0, obj.resolve(head) + (f".{rest}" if rest else ""))
    except griffe.NameResolutionError:
        pass
    for candidate in candidates:
        try:
            found = collection.get_member(candidate)
        except (KeyError, ValueError, griffe.AliasResolutionError, griffe.CyclicAliasError):
            continue
        return getattr(found, "path", candidate)
    return None


def _walk(obj: griffe.Object) -> Iterator[griffe.Object]:
    """``obj`` and every object defined inside it (not the names it imports)."""
    yield obj
    for member in obj.members.values():
        if not member.is_alias:
            yield from _walk(member)


class SphinxMarkup(griffe.Extension):
    """Rewrite the Sphinx roles of every docstring as cross-references (see the module), and
    reST's ``text::`` before a literal block as ``text:`` (Markdown's indented block follows)."""

    def on_package(self, *, pkg: griffe.Module, loader: griffe.GriffeLoader, **kwargs: Any) -> None:
        for obj in _walk(pkg):
            self._rewrite(obj, loader.modules_collection)

    def _rewrite(self, obj: griffe.Object, collection: griffe.ModulesCollection) -> None:
        docstring = obj.docstring
        if docstring is None or ":" not in docstring.value:
            return
        docstring.value = LITERAL.sub(lambda m: f"{m.group(1)}:\n" if m.group(1) else "\n",
                                      docstring.value)

        def link(match: re.Match[str]) -> str:
            short, name, call = match.groups()
            title = html.escape((name.rsplit(".", 1)[-1] if short else name) + (call or ""))
            path = _full_path(obj, name, collection)
            if path is None:
                griffe.logger.warning(f"{docstring.parent.filepath}:{docstring.lineno}: "
                                      f"{match.group(0)} names nothing that exists")
                return f"<code>{title}</code>"
            return f'<autoref identifier="{path}" optional><code>{title}</code></autoref>'

        docstring.value = ROLE.sub(link, docstring.value)


class FieldHelp(griffe.Extension):
    """Give each ``_field``/``_option`` attribute its help text as docstring and its default."""

    def on_attribute_instance(self, *, attr: griffe.Attribute, **kwargs: Any) -> None:
        value = attr.value
        if not (isinstance(value, griffe.ExprCall) and str(value.function) in ("_field", "_option")):
            return
        default, help_text = value.arguments[:2]
        attr.docstring = griffe.Docstring(ast.literal_eval(str(help_text)), parent=attr)
        attr.value = default
