"""Section references written as text become links: "THEORY.md §3.5", "THEORY §3.3–§3.5", "RESULTS §9"
in a page or a docstring link to that numbered section of that page, and a bare "§2.1" or "section 2.1"
to the section of the page it is written in (when that page has one; otherwise it stays text).

The pages and the docstrings keep their plain wording (readable on a forge, in ``help()`` and in an
editor); the site adds the links. A numbered section is a heading whose title starts with its
number ("3.5 The post-update"). Runs at write time, when every page's sections are known.
"""
from __future__ import annotations

import re
from typing import Any

from docutils import nodes
from sphinx.application import Sphinx
from sphinx.transforms.post_transforms import SphinxPostTransform

_REFERENCE = re.compile(
    r"(?:(?:docs/)?(?P<page>[A-Z][A-Z_]+)(?:\.md)?,?\s)?(?:§|section )(?P<number>\d+(?:\.\d+)*)"
    r"(?:(?P<dash>[–-])§(?P<last>\d+(?:\.\d+)*))?")
_NUMBERED = re.compile(r"^(\d+(?:\.\d+)*)\.?\s")


def numbered_sections(app: Sphinx, docname: str, cache: dict[str, dict[str, str]]) -> dict[str, str]:
    """Section number -> anchor id of the numbered headings of ``docname``."""
    if docname not in cache:
        found: dict[str, str] = {}
        if docname in app.env.all_docs:
            for section in app.env.get_doctree(docname).findall(nodes.section):
                title = section.next_node(nodes.title)
                match = _NUMBERED.match(title.astext()) if title is not None else None
                if match and section["ids"]:
                    found.setdefault(match[1], section["ids"][0])
        cache[docname] = found
    return cache[docname]


class SectionLinks(SphinxPostTransform):
    default_priority = 20
    formats = ("html",)

    def _page(self, name: str | None) -> str | None:
        """The docname a written page name stands for ("THEORY" -> "THEORY"); None: the current page."""
        if name is None:
            return self.env.docname
        for docname in self.env.all_docs:
            if docname.rsplit("/", 1)[-1] == name:
                return docname
        return None

    def _link(self, docname: str, number: str, text: str, cache: dict[str, dict[str, str]]) -> nodes.Node:
        anchor = numbered_sections(self.app, docname, cache).get(number)
        if anchor is None:
            return nodes.Text(text)
        uri = "" if docname == self.env.docname else self.app.builder.get_relative_uri(self.env.docname, docname)
        return nodes.reference(text, text, internal=True, refuri=f"{uri}#{anchor}")

    def run(self, **kwargs: Any) -> None:
        cache: dict[str, dict[str, str]] = self.env.temp_data.setdefault("fptt_section_numbers", {})
        for text_node in list(self.document.findall(nodes.Text)):
            parent = text_node.parent
            if parent is None or ("§" not in text_node and "section " not in text_node) or any(
                    isinstance(a, (nodes.reference, nodes.literal, nodes.literal_block, nodes.title, nodes.raw,
                                   nodes.math, nodes.math_block))
                    for a in _ancestors(parent)):
                continue
            text = str(text_node)
            pieces: list[nodes.Node] = []
            last = 0
            for match in _REFERENCE.finditer(text):
                docname = self._page(match["page"])
                if docname is None:
                    continue
                if match.start() > last:
                    pieces.append(nodes.Text(text[last:match.start()]))
                first_end = match.end("number")
                pieces.append(self._link(docname, match["number"], text[match.start():first_end], cache))
                if match["last"]:
                    pieces.append(nodes.Text(match["dash"]))
                    pieces.append(self._link(docname, match["last"], text[match.start("last") - 1:match.end()], cache))
                last = match.end()
            if not pieces:
                continue
            if last < len(text):
                pieces.append(nodes.Text(text[last:]))
            index = parent.index(text_node)
            parent.remove(text_node)
            for offset, piece in enumerate(pieces):
                parent.insert(index + offset, piece)


def _ancestors(node: nodes.Node) -> list[nodes.Node]:
    found = []
    while node is not None:
        found.append(node)
        node = node.parent
    return found


def setup(app: Sphinx) -> dict[str, Any]:
    app.add_post_transform(SectionLinks)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
