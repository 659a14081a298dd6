"""Links from a docs/ page to a file or folder elsewhere in the repository (benchmarks/results/,
experiments/, examples/, src/) or to a page the site leaves out (docs/results/tables.md). Sphinx
knows only the site's pages: MyST would warn about such a link (a folder, a Markdown file) or copy
the file into the site as a download (a PNG, a script).

Each such link becomes an external link: to ``fptt_repo_url`` + the path (docs/conf.py sets it to
the repository's files online, overridable with ``FPTT_REPO_URL``), or, with ``fptt_repo_url =
"checkout"``, to the file in the checkout the site was built from, relative to the built page. A link to a path that
does not exist is left to MyST, which warns: a moved file still fails the ``-W`` build.
"""
from __future__ import annotations

import posixpath
from pathlib import Path
from typing import Any

from docutils import nodes
from sphinx import addnodes
from sphinx.application import Sphinx
from sphinx.transforms.post_transforms import SphinxPostTransform


class RepositoryLinks(SphinxPostTransform):
    """Runs before MyST's reference resolver (priority 9)."""

    default_priority = 5

    def _outside(self, node: Any) -> tuple[str, str] | None:
        """(repository-relative path, anchor) of a link to an existing path outside docs/, else None."""
        target = str(node.get("reftarget", ""))
        if not target or "://" in target:
            return None
        anchor = str(node.get("reftargetid") or "")
        target, _, hashed = target.partition("#")
        anchor = anchor or hashed
        srcdir = Path(self.app.srcdir).resolve()
        repo = srcdir.parent
        docdir = Path(self.env.doc2path(node.get("refdoc", self.env.docname))).parent
        path = Path(target)
        candidates = [path] if path.is_absolute() else [docdir / path]
        if node.get("refdomain") == "doc":  # MyST turned "x.md" into the docname "x": put the suffix back
            candidates += [Path(f"{c}.md") for c in list(candidates)]
        for candidate in candidates:
            resolved = candidate.resolve()
            if not resolved.exists() or repo not in resolved.parents:
                continue
            # outside docs/, or a file under docs/ that the site leaves out (exclude_patterns)
            if srcdir not in resolved.parents or (
                    resolved.suffix == ".md" and self.env.path2doc(str(resolved)) not in self.env.all_docs):
                return resolved.relative_to(repo).as_posix(), anchor
        return None

    def run(self, **kwargs: Any) -> None:
        base = self.config.fptt_repo_url
        for node in list(self.document.findall(addnodes.pending_xref)) + list(
                self.document.findall(addnodes.download_reference)):
            if node.get("reftype") != "myst":
                continue
            found = self._outside(node)
            if found is None:
                continue
            relpath, anchor = found
            if base and base != "checkout":
                uri = base.rstrip("/") + "/" + relpath
            else:  # docs/_build/html/<doc>.html -> the repository root: <doc>'s folders, html, _build, docs
                uri = posixpath.join(*([".."] * (self.env.docname.count("/") + 3)), relpath)
            if anchor:
                uri += "#" + anchor
            reference = nodes.reference("", "", internal=False, refuri=uri, reftitle=relpath)
            reference += node.children
            node.replace_self(reference)


def setup(app: Sphinx) -> dict[str, Any]:
    app.add_config_value("fptt_repo_url", "", "html")
    app.add_post_transform(RepositoryLinks)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
