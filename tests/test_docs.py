"""The documentation site's promises that a build alone does not check: code that fits the page, a
reference that documents every name the pages use, a CLI page that matches the parser, numbers that
match their records, a home-page example that runs, and links into the repository that resolve.

The checks on the built site read ``docs/_build/stored`` (``make docs-stored``, which ``make test``
runs before pytest) or ``docs/_build/html`` (``make docs``), whichever is newer.
"""
from __future__ import annotations

import ast
import importlib
import json
import os
import re
import statistics
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import unquote, urlsplit

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
sys.path.insert(0, str(DOCS))
sys.path.insert(0, str(DOCS / "_ext"))

import cli_reference  # noqa: E402  (docs/cli_reference.py)

# The widest code line a page may hold. At 1280 px the theme's content column shows about 114
# characters of the code font (custom.css); 100 leaves room for the scroll bar and a narrower window.
CODE_WIDTH = 100

# the site's pages: the guides, the tutorials and the API pages (not the stored notebooks, not _build)
PAGES = sorted(p for p in DOCS.rglob("*.md") if not {"_build", "executed"} & set(p.relative_to(DOCS).parts)
               and p.name != "tables.md")
TUTORIALS = sorted((DOCS / "tutorials").glob("[0-9][0-9]_*.md"))

_FENCE = re.compile(r"^(?P<indent>\s*)(?P<fence>`{3,}|~{3,})\s*(?P<info>.*)$")


def code_blocks(text: str) -> Iterator[tuple[int, str, list[str]]]:
    """(first line number, language, lines) of each fenced block of a MyST page (``{code-cell} python``
    counts as python); the options of a directive (``:name: value`` lines) are left out."""
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        match = _FENCE.match(lines[i])
        if not match:
            i += 1
            continue
        fence, info = match["fence"], match["info"].strip()
        language = info.split()[-1].lower() if info else ""
        body, j = [], i + 1
        while j < len(lines) and not lines[j].strip().startswith(fence):
            body.append(lines[j])
            j += 1
        if info.startswith("{") and language not in ("python", "py", "bash", "console", "text", "yaml", "toml"):
            pass  # a directive (toctree, eval-rst, figure...): not code a reader copies
        else:
            while body and re.match(r"^:\w[\w-]*:", body[0]):
                body.pop(0)
            yield i + 2, language, body
        i = j + 1


# --- nothing cut off ------------------------------------------------------------------------------

def test_code_lines_fit_the_page() -> None:
    too_wide = [f"{page.relative_to(ROOT)}:{start + n}: {len(line)} characters"
                for page in PAGES for start, _, body in code_blocks(page.read_text(encoding="utf-8"))
                for n, line in enumerate(body) if len(line) > CODE_WIDTH]
    assert not too_wide, f"code lines wider than {CODE_WIDTH} characters (cut off at 1280 px):\n" + "\n".join(too_wide)


def test_code_blocks_are_found() -> None:
    """The width check sees the tutorials' cells and the guides' blocks (a parser that found none would pass)."""
    tutorial_cells = [b for p in TUTORIALS for b in code_blocks(p.read_text(encoding="utf-8")) if b[1] == "python"]
    assert len(tutorial_cells) >= 3 * len(TUTORIALS)
    assert any(b[1] == "bash" for b in code_blocks((DOCS / "CLI.md").read_text(encoding="utf-8")))
    wide = "```python\n" + "x = 1  # " + "y" * CODE_WIDTH + "\n```\n"
    assert max(len(line) for _, _, body in code_blocks(wide) for line in body) > CODE_WIDTH


def test_css_wraps_outputs_and_keeps_flags_whole() -> None:
    css = (DOCS / "_static" / "custom.css").read_text(encoding="utf-8")
    assert re.search(r"div\.cell_output[^{]*\{[^}]*white-space:\s*pre-wrap", css), "long cell output must wrap"
    assert re.search(r"td[^{]*code[^{]*\{[^}]*white-space:\s*nowrap", css), "flags in tables must not break"


# --- the API reference documents what the pages use ---------------------------------------------

def _built_site() -> Path:
    built = [d for d in (DOCS / "_build" / "stored", DOCS / "_build" / "html") if (d / "objects.inv").exists()]
    if not built:
        pytest.skip("no built site: make docs-stored (make test runs it before pytest)")
    return max(built, key=lambda d: (d / "objects.inv").stat().st_mtime)


def _documented() -> dict[str, list[Any]]:
    """Short name -> the objects the built reference documents under that name (any module)."""
    from sphinx.util.inventory import InventoryFile

    with open(_built_site() / "objects.inv", "rb") as stream:
        inventory = InventoryFile.load(stream, "", lambda base, uri: uri)
    found: dict[str, list[Any]] = {}
    for kind, entries in inventory.items():
        if kind.startswith("py:"):
            for name in entries:
                obj = _resolve(name)
                if obj is not None:
                    found.setdefault(name.rsplit(".", 1)[-1], []).append(obj)
    return found


def _resolve(dotted: str) -> Any:
    parts = dotted.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        try:
            for attribute in parts[i:]:
                obj = getattr(obj, attribute)
        except AttributeError:
            return None
        return obj
    return None


def names_used() -> dict[str, set[str]]:
    """``fptt`` names the tutorials and guides use -> the pages: imports in their Python code, and
    ``fptt.x.y`` written in code spans of their text."""
    used: dict[str, set[str]] = {}
    for page in PAGES:
        if page.parent.name == "api":
            continue  # the reference itself
        text = page.read_text(encoding="utf-8")
        for _, language, body in code_blocks(text):
            if language not in ("python", "py"):
                continue
            for node in ast.walk(ast.parse("\n".join(body))):
                if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "fptt":
                    for alias in node.names:
                        used.setdefault(f"{node.module}.{alias.name}", set()).add(page.name)
        for match in re.finditer(r"`(fptt(?:\.\w+)+)", text):
            used.setdefault(match[1], set()).add(page.name)
    return used


def test_every_name_the_pages_use_is_in_the_reference() -> None:
    documented = _documented()
    used = names_used()
    assert len(used) > 40, "the scan of the pages found too few fptt names"
    missing = []
    for name, pages in sorted(used.items()):
        obj = _resolve(name)
        if obj is None:
            missing.append(f"{name} (not importable; used in {', '.join(sorted(pages))})")
        elif not any(candidate is obj for candidate in documented.get(name.rsplit(".", 1)[-1], [])):
            missing.append(f"{name} (used in {', '.join(sorted(pages))})")
    assert not missing, "names used by the pages but missing from the API reference:\n" + "\n".join(missing)


def test_code_links_to_the_reference() -> None:
    """sphinx-codeautolink turned the tutorials' fptt names into links to their API entries, and a
    guide's inline `fptt.x.y` links too (docs/_ext/code_links.py)."""
    site = _built_site()
    html = (site / "tutorials" / "01_first_online_snn.html").read_text(encoding="utf-8")
    assert 'href="../api/fptt.html#fptt.train_epoch"' in html
    assert 'href="../api/fptt.html#fptt.SpikingRNN"' in html
    guide = (site / "CLI.html").read_text(encoding="utf-8")
    assert 'href="api/run.html#fptt.run.build.load_model"' in guide


# --- the CLI page is the parser's ---------------------------------------------------------------

def test_cli_page_reference_is_generated_from_the_parser() -> None:
    page = cli_reference.PAGE.read_text(encoding="utf-8")
    assert cli_reference.updated_page(page, cli_reference.render()) == page, (
        "docs/CLI.md is out of date with the parser: run python docs/cli_reference.py")


def _help_options(argv: list[str]) -> set[str]:
    """The subcommands or flags that ``fptt ARGV --help`` prints."""
    out = subprocess.run([sys.executable, "-m", "fptt.cli", *argv, "--help"], capture_output=True, text=True,
                         env={"COLUMNS": "200", "PATH": ""}, check=True).stdout
    if not argv:  # the subcommands: "    train     train a spiking network" under COMMAND
        return set(re.findall(r"^ {4}([a-z][\w-]*) {2,}\S", out, re.M))
    flags = set()
    for line in out.splitlines():  # an option's line: "  --k K   help..." (help after two spaces)
        options = re.match(r"^\s+(-\S.*?)(?:\s{2,}|$)", line)
        if options:
            flags |= set(re.findall(r"(?<![\w-])(--[a-z][\w-]*)", options[1]))
    return flags - {"--help"}


def test_cli_page_lists_every_command_and_flag_of_help() -> None:
    page = (DOCS / "CLI.md").read_text(encoding="utf-8")
    commands = _help_options([])
    assert {"train", "eval", "export", "compare", "bench", "stream", "demo"} <= commands
    assert len(_help_options(["train"])) > 50  # the help was read (fptt train has over 60 flags)
    for command in commands:
        assert f"### `fptt {command}` options" in page
        section = page.split(f"### `fptt {command}` options", 1)[1].split("\n### ", 1)[0]
        for flag in _help_options([command]):
            # a BooleanOptionalAction's pair --x / --no-x is shown as `--[no-]x`
            shown = {f"`{flag}`", f"`{flag.replace('--no-', '--[no-]', 1)}`", f"`{flag.replace('--', '--[no-]', 1)}`"}
            assert any(form in section for form in shown), f"fptt {command} --help has {flag}, docs/CLI.md does not"
    for benchmark in ("memory", "speed", "peers", "throughput", "compile"):
        assert f"#### `fptt bench {benchmark}` options" in page


def test_usage_page_lists_every_field_of_every_config_section() -> None:
    from fptt.run.config import SECTIONS

    page = (DOCS / "USAGE.md").read_text(encoding="utf-8")
    for section in SECTIONS:
        row = re.search(rf"^\| `{section.name}` \|(.*)\|$", page, flags=re.M)
        assert row, f"USAGE.md has no row for the config section {section.name}"
        listed = set(re.findall(r"`(\w+)`", row[1]))
        missing = [name for name in section.settings() if name not in listed]
        assert not missing, f"USAGE.md's {section.name} row lacks {missing}"


# --- numbers a page states match their records ------------------------------------------------------

def _record(path: str) -> Any:
    return json.loads((ROOT / path).read_text(encoding="utf-8"))


def test_throughput_figures_match_the_record() -> None:
    record = _record("benchmarks/results/throughput.json")
    batch = record["shape"]["batch"]
    raw = record["raw_seconds_per_batch"]
    fptt_rate = batch / statistics.median(raw["ltc_fptt_k1"])
    bptt_rate = batch / statistics.median(raw["ltc_bptt"])
    per_round = statistics.median(f / b for f, b in zip(raw["ltc_fptt_k1"], raw["ltc_bptt"]))
    assert round(fptt_rate) == round(record["samples_per_second"]["ltc_fptt_k1"]) == 290
    assert round(per_round, 2) == round(record["time_ratio_to_ltc_bptt"]["ltc_fptt_k1"], 2) == 1.10
    ratio_of_rates = bptt_rate / fptt_rate
    stated = [f"{round(fptt_rate)} samples/s", f"{round(bptt_rate)}", f"×{ratio_of_rates:.2f}", f"×{per_round:.2f}"]
    for page in ("docs/PERFORMANCE.md", "docs/index.md", "README.md"):
        text = " ".join((ROOT / page).read_text(encoding="utf-8").split())
        for figure in stated:
            assert figure in text, f"{page} should state {figure} (benchmarks/results/throughput.json)"
        assert "per-round" in text, f"{page}: say which ratio ×{per_round:.2f} is (the median of per-round ratios)"


def test_compile_times_match_the_record() -> None:
    seconds = _record("benchmarks/results/compile.json")["compile_seconds"]
    cold, warm = f"{seconds['cold']:.1f} s", f"{seconds['warm']:.1f} s"
    assert (cold, warm) == ("13.2 s", "2.5 s")
    for path in ("docs/PERFORMANCE.md", "src/fptt/optim/fptt.py"):
        text = " ".join((ROOT / path).read_text(encoding="utf-8").split())
        assert cold in text and warm in text, f"{path} should give the measured compile times {cold}, {warm}"
        assert "about 20 s" not in text and "about 3 s" not in text


def test_event_memory_figure_matches_the_record() -> None:
    runs = _record("experiments/results/frames/frames.json")
    peaks = [value for value in _find(runs, "saved_tensor_peak_mib")]
    assert peaks
    bptt_500 = max(peaks)
    text = (DOCS / "tutorials" / "05_event_data.md").read_text(encoding="utf-8")
    assert f"{bptt_500:,.0f} MiB" in text, f"tutorial 5 should state BPTT's {bptt_500:,.0f} MiB at 500 frames"
    assert f"{bptt_500 / 1024:.2f} GiB" in text
    assert "1.3 GiB" not in text


def _find(tree: Any, key: str) -> Iterator[float]:
    if isinstance(tree, dict):
        for k, v in tree.items():
            if k == key and isinstance(v, (int, float)):
                yield float(v)
            else:
                yield from _find(v, key)
    elif isinstance(tree, list):
        for item in tree:
            yield from _find(item, key)


# --- the home page ------------------------------------------------------------------------------

def test_home_page_example_runs(tmp_path: Path) -> None:
    """The Python example of the home page, 10-15 lines, runs as written and trains with FPTT."""
    blocks = [body for _, language, body in code_blocks((DOCS / "index.md").read_text(encoding="utf-8"))
              if language == "python"]
    assert len(blocks) == 1
    code = "\n".join(blocks[0])
    assert 10 <= len([line for line in blocks[0] if line.strip()]) <= 15
    assert "FPTT(" in code and "train_epoch(" in code
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=300,
                            env={"OMP_NUM_THREADS": "1", "PATH": ""})
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip(), "the example prints its result"


def test_home_page_shows_figures_claims_and_an_install_line() -> None:
    text = (DOCS / "index.md").read_text(encoding="utf-8")
    figures = re.findall(r"```\{figure\}\s+(\S+)", text) + re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text)
    assert len(figures) >= 2 and all((DOCS / f).resolve().exists() for f in figures), figures
    assert any(f.endswith("benchmarks/results/memory.png") for f in figures)
    assert "not held" in text or "missed" in text
    install = [line for _, language, body in code_blocks(text) if language == "bash" for line in body
               if "pip install" in line]
    assert install and "dist/" not in install[0], "the install line must work without building a wheel first"


# --- links into the repository -------------------------------------------------------------------

class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.hrefs: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a":
            self.hrefs += [value for name, value in attrs if name == "href" and value]


def test_links_into_the_repository_use_the_configured_base() -> None:
    """Every link from the site into the repository starts with the one configured base and names a
    path that exists in this checkout; none is relative to a checkout (they would break once hosted)."""
    site = _built_site()
    conf = (DOCS / "conf.py").read_text(encoding="utf-8")
    configured = re.search(r'^REPOSITORY_FILES = "(https://[^"]+)"', conf, re.M)
    assert configured, "docs/conf.py sets REPOSITORY_FILES, the default base of links into the repository"
    default = os.environ.get("FPTT_REPO_URL") or configured[1]
    into_repository = 0
    for html in site.rglob("*.html"):
        if "_static" in html.parts or "_modules" in html.parts:
            continue
        parser = _Links()
        parser.feed(html.read_text(encoding="utf-8"))
        for href in parser.hrefs:
            target = urlsplit(href)
            if not target.scheme:
                resolved = (html.parent / unquote(target.path)).resolve() if target.path else html
                assert site.resolve() in resolved.parents or resolved == site.resolve(), (
                    f"{html.relative_to(site)} links outside the site: {href}")
            elif href.startswith(default.rstrip("/") + "/"):
                into_repository += 1
                relative = unquote(target.path)[len(urlsplit(default).path.rstrip("/")) + 1:]
                assert (ROOT / relative).exists(), f"{html.relative_to(site)} links to a missing {relative}"
    assert into_repository >= 20


# --- the mathematics and its references ---------------------------------------------------------

def test_equations_render_as_math_and_section_references_link() -> None:
    site = _built_site()
    theory = (site / "THEORY.html").read_text(encoding="utf-8")
    assert theory.count('class="math') >= 10, "THEORY's equations render as math"
    assert "α_t = σ" not in theory, "an equation of THEORY is still plain text"
    assert '<a class="reference internal" href="#input-current-and-normalisation">§2.1</a>' in theory
    api = (site / "api" / "fptt.html").read_text(encoding="utf-8")
    assert re.search(r'<a class="reference internal" href="\.\./THEORY\.html#[\w-]+">THEORY(\.md)? §3', api), (
        "a docstring's 'THEORY §3...' links to THEORY")
    neurons = (site / "api" / "neurons.html").read_text(encoding="utf-8")
    assert neurons.count('class="math') >= 5, "the neurons' docstrings state their equations as math"
