"""A dotted ``fptt`` name written as inline code in a page ("`fptt.run.build.load_model(run_dir)`")
links to its entry in the API reference, as the names in code blocks do (sphinx-codeautolink).

Only fully qualified names starting with ``fptt.`` are linked (a bare ``step`` could mean anything);
a call's arguments may follow the name. A name the reference does not document stays plain code
(tests/test_docs.py fails for such a name, so that should not last). Runs before Sphinx resolves
references.
"""
from __future__ import annotations

import re
from typing import Any

from docutils import nodes
from sphinx import addnodes
from sphinx.application import Sphinx
from sphinx.transforms.post_transforms import SphinxPostTransform

_NAME = re.compile(r"^(fptt(?:\.[A-Za-z_]\w*)+)(?:\(.*\))?$")


class InlineCodeLinks(SphinxPostTransform):
    default_priority = 6  # after repo_links (5), before the reference resolver (10)

    def run(self, **kwargs: Any) -> None:
        for literal in list(self.document.findall(nodes.literal)):
            match = _NAME.match(literal.astext())
            parent = literal.parent
            if not match or parent is None or _inside_link(literal):
                continue
            xref = addnodes.pending_xref("", refdomain="py", reftype="obj", reftarget=match[1],
                                         refexplicit=True, refwarn=False, refdoc=self.env.docname)
            parent.replace(literal, xref)
            xref += literal


def _inside_link(node: nodes.Node) -> bool:
    while node is not None:
        if isinstance(node, (nodes.reference, addnodes.pending_xref, nodes.title, nodes.literal_block)):
            return True
        node = node.parent
    return False


def setup(app: Sphinx) -> dict[str, Any]:
    app.add_post_transform(InlineCodeLinks)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
