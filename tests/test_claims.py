"""The headline figures of README.md and docs/RESULTS.md against the run records they come from.

Each entry of ``docs/claims.json`` names a figure as a document prints it (``"text"``), the
documents that print it, the record files (globs under the repository root, with the number of
files they must match) and how the figure is computed from them: a key path into each file, a
reduction over the values, a scale and a Python format. The test recomputes every figure, formats
it, and fails when the result differs from the text or the text is missing from a document.

Key paths: ``a.b`` reads keys, ``[i]`` an index, ``[i:j]`` a slice, ``[k=v,k2=v2]`` the list items
whose keys have those values (values read as JSON where they parse); after a slice or a filter the
rest of the path applies to every item. A ``.jsonl`` file is the list of its lines. A list found
at the end of the path gives its items; ``null`` values (a diverged seed's score) are left out.

Reductions: ``value`` (exactly one value), ``mean``, ``mean_std`` (mean and sample standard
deviation, ``{mean}`` and ``{std}``), ``ci95`` (the Student-t 95 % interval of the mean,
``{low}`` and ``{high}``), ``median``, ``min``, ``max``, ``sum``, ``last_mean:N`` (the
mean of the last N values of each file, then over the files), ``ratio`` and ``difference`` (the
value over, or minus, the ``against`` group's value) and ``paired_p`` (the two-sided paired t-test p-value against the
``against`` group, paired by the ``_s<seed>`` in the paths, ``{p}``, and the mean of the paired
differences, ``{difference}``, in the claim's scale). A claim with ``parts``
checks several figures printed as one string (a table row): each part is such a group, named in
the format.
"""
from __future__ import annotations

import json
import re
import statistics as pystats
from pathlib import Path
from typing import Any

import pytest

from fptt.run import statistics

ROOT = Path(__file__).resolve().parents[1]
CLAIMS = ROOT / "docs" / "claims.json"

_TOKEN = re.compile(r"\[([^\]]*)\]|\.?([^.\[\]]+)")


def _parse(path: str) -> list[tuple[str, Any]]:
    steps: list[tuple[str, Any]] = []
    position = 0
    while position < len(path):
        match = _TOKEN.match(path, position)
        if not match or match.end() == position:
            raise ValueError(f"bad key path {path!r} at {position}")
        position = match.end()
        if match[2] is not None:
            steps.append(("key", match[2]))
            continue
        selector = match[1].strip()
        if "=" in selector:
            wanted = {}
            for part in selector.split(","):
                key, _, raw = part.partition("=")
                try:
                    wanted[key.strip()] = json.loads(raw)
                except json.JSONDecodeError:
                    wanted[key.strip()] = raw.strip()
            steps.append(("filter", wanted))
        elif ":" in selector:
            start, _, stop = selector.partition(":")
            steps.append(("slice", slice(int(start) if start else None, int(stop) if stop else None)))
        else:
            steps.append(("index", int(selector)))
    return steps


def _walk(value: Any, steps: list[tuple[str, Any]]) -> list[Any]:
    if not steps:
        return [value]
    (kind, argument), rest = steps[0], steps[1:]
    if kind == "key":
        if not isinstance(value, dict) or argument not in value:
            raise KeyError(f"no key {argument!r}")
        return _walk(value[argument], rest)
    if kind == "index":
        return _walk(value[argument], rest)
    items = value[argument] if kind == "slice" else [
        item for item in value if all(isinstance(item, dict) and item.get(k) == v for k, v in argument.items())]
    if not items:
        raise KeyError(f"nothing selected by {argument!r}")
    return [found for item in items for found in _walk(item, rest)]


def _load(path: Path) -> Any:
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".jsonl":
        return [json.loads(line) for line in text.splitlines() if line.strip()]
    return json.loads(text)


def _group(spec: dict[str, Any]) -> list[tuple[Path, list[float]]]:
    """(file, its values) for every file the spec's globs match; checks the count."""
    files = sorted({path for pattern in spec["files"] for path in ROOT.glob(pattern)})
    if len(files) != spec["count"]:
        raise AssertionError(f"{spec['files']} matched {len(files)} file(s), the claim expects {spec['count']}: "
                             f"{[str(f.relative_to(ROOT)) for f in files]}")
    steps = _parse(spec["key"])
    return [(path, _numbers(_walk(_load(path), steps))) for path in files]


def _numbers(found: list[Any]) -> list[float]:
    """The values a key path found, a list at the leaf read as its items, ``null`` (a diverged
    seed's missing score) left out."""
    flat = [item for value in found for item in (value if isinstance(value, list) else [value])]
    return [float(value) for value in flat if value is not None]


def _seed(path: Path) -> int:
    """The seed a record was trained with, to pair on: its run folder's ``config.json`` (``run.seed``),
    else the ``_s<seed>`` in its path (records without a config beside them)."""
    config = path.parent / "config.json"
    if config.exists():
        settings = json.loads(config.read_text(encoding="utf-8"))
        return int(settings["run"]["seed"] if "run" in settings else settings["seed"])
    match = re.search(r"_s(\d+)(?:/|$|\.)", str(path.relative_to(ROOT)))
    if not match:
        raise AssertionError(f"{path}: no config.json beside it and no _s<seed> in its path to pair on")
    return int(match[1])


def _fields(claim: dict[str, Any]) -> dict[str, float]:
    """The named values of one group of records (``value``; ``mean`` and ``std``; ``low`` and
    ``high``; or ``p`` and ``difference``)."""
    scale = float(claim.get("scale", 1.0))
    group = _group(claim)
    values = [v * scale for _, file_values in group for v in file_values]
    reduce = claim["reduce"]
    fields: dict[str, float]
    if reduce == "value":
        if len(values) != 1:
            raise AssertionError(f"reduce 'value' needs exactly one value, got {len(values)}")
        fields = {"value": values[0]}
    elif reduce in ("mean", "median", "min", "max", "sum"):
        function = {"mean": statistics.mean, "median": pystats.median, "min": min, "max": max, "sum": sum}[reduce]
        fields = {"value": float(function(values))}
    elif reduce == "mean_std":
        fields = {"mean": statistics.mean(values), "std": statistics.sample_std(values)}
    elif reduce == "ci95":
        low, high = statistics.confidence_interval(values)
        fields = {"low": low, "high": high}
    elif reduce.startswith("last_mean:"):
        last = int(reduce.split(":")[1])
        fields = {"value": statistics.mean([statistics.mean([v * scale for v in file_values[-last:]])
                                            for _, file_values in group])}
    elif reduce in ("ratio", "difference"):
        other = [v * scale for _, file_values in _group(claim["against"]) for v in file_values]
        if len(values) != 1 or len(other) != 1:
            raise AssertionError(f"reduce {reduce!r} needs one value on each side")
        fields = {"value": values[0] / other[0] if reduce == "ratio" else values[0] - other[0]}
    elif reduce == "paired_p":
        mine = {_seed(path): statistics.mean(file_values) for path, file_values in group}
        theirs = {_seed(path): statistics.mean(file_values) for path, file_values in _group(claim["against"])}
        shared = sorted(set(mine) & set(theirs))
        test = statistics.paired_t_test([mine[s] for s in shared], [theirs[s] for s in shared])
        fields = {"p": test.p_value, "difference": test.mean_difference * scale}
    else:
        raise AssertionError(f"unknown reduce {reduce!r}")
    return fields


def compute(claim: dict[str, Any]) -> str:
    """The claim's figure recomputed from its records and formatted as the claim prints it. A claim
    with ``parts`` (several figures in one printed string, e.g. a table row) formats each part's
    value by its name (``{name}``; ``{name_mean}`` and ``{name_std}`` for ``mean_std``)."""
    if "parts" not in claim:
        return str(claim["format"]).format(**_fields(claim))
    fields: dict[str, float] = {}
    for name, part in claim["parts"].items():
        for field, value in _fields(part).items():
            fields[name if field in ("value", "p") else f"{name}_{field}"] = value
    return str(claim["format"]).format(**fields)


def _normalised(text: str) -> str:
    return " ".join(text.split())


def problems(claim: dict[str, Any]) -> list[str]:
    """What is wrong with one claim: a figure that its records do not give, or a document that
    does not print it. Empty when the claim holds."""
    found = []
    try:
        recomputed = compute(claim)
    except (AssertionError, KeyError, IndexError, ValueError, OSError) as error:
        sources = claim.get("files") or [f for part in claim["parts"].values() for f in part["files"]]
        return [f"{claim['id']}: cannot recompute from {sources}: {error}"]
    if recomputed != claim["text"]:
        found.append(f"{claim['id']}: the records give {recomputed!r}, the documents print {claim['text']!r}")
    for document in claim["docs"]:
        if _normalised(claim["text"]) not in _normalised((ROOT / document).read_text(encoding="utf-8")):
            found.append(f"{claim['id']}: {document} does not print {claim['text']!r}")
    return found


def _claims() -> list[dict[str, Any]]:
    return json.loads(CLAIMS.read_text(encoding="utf-8"))["claims"]


@pytest.mark.parametrize("claim", _claims(), ids=lambda claim: claim["id"])
def test_figure_matches_its_record(claim: dict[str, Any]) -> None:
    found = problems(claim)
    assert not found, "\n".join(found)


def test_claims_file_is_well_formed() -> None:
    claims = _claims()
    ids = [claim["id"] for claim in claims]
    assert len(ids) == len(set(ids)), "claim ids must be unique"
    documents = {document for claim in claims for document in claim["docs"]}
    assert {"README.md", "docs/RESULTS.md"} <= documents
    for claim in claims:
        assert set(claim) <= {"id", "docs", "text", "files", "count", "key", "reduce", "scale", "format", "against",
                              "parts", "note"}, claim["id"]
        assert ("parts" in claim) != ("files" in claim), f"{claim['id']}: either files or parts"


def test_a_wrong_claim_is_reported() -> None:
    """The check can fail: a figure one tenth of a point off, a document that does not print the
    text, a glob that matches the wrong number of files and a missing key are all reported."""
    right = next(claim for claim in _claims() if claim["id"] == "mnist1d-default-fptt-test")
    assert problems(right) == []
    wrong_number = {**right, "text": "88.6 ± 1.7 %"}
    assert any("the records give '87.6 ± 1.7 %'" in line for line in problems(wrong_number))
    assert any("does not print '88.6 ± 1.7 %'" in line for line in problems(wrong_number))
    assert any("matched 3 file(s), the claim expects 5" in line for line in problems({**right, "count": 5}))
    assert any("cannot recompute" in line for line in problems({**right, "key": "accuracy_typo"}))
    wrong_document = {**right, "docs": ["docs/THEORY.md"]}
    assert problems(wrong_document) == [f"{right['id']}: docs/THEORY.md does not print '87.6 ± 1.7 %'"]


def test_key_paths() -> None:
    tree = {"rows": [{"m": "a", "v": 1}, {"m": "b", "v": 2}, {"m": "a", "v": 3}], "x": {"y": [5, 6, 7]}}
    assert _walk(tree, _parse("rows[m=a].v")) == [1, 3]
    assert _walk(tree, _parse("rows[-1].v")) == [3]
    assert _walk(tree, _parse("rows[1:].v")) == [2, 3]
    assert _walk(tree, _parse("x.y[0]")) == [5]
    assert _walk([{"v": 1}, {"v": 2}], _parse("[-1].v")) == [2]
    with pytest.raises(KeyError):
        _walk(tree, _parse("rows[m=c].v"))


def test_every_recorded_v04_run_read_its_test_split_once_or_never() -> None:
    """The run folders recorded with configs in sections (v0.3's config work on) either read their
    test split exactly once, by fptt train after the last epoch (the v0.4 protocol: ``summary.json``
    has ``test`` and ``test_reads.json`` one read, which ``test.json`` copies), or never (the MNIST-1D
    tuning runs, which ran before fptt train read test and were scored on validation only)."""
    folders = [path.parent for path in (ROOT / "experiments" / "results").rglob("config.json")
               if "network" in json.loads(path.read_text()) and (path.parent / "summary.json").is_file()]
    # a run stopped before its last epoch records "test": null (it never read test)
    read_once = [folder for folder in folders
                 if json.loads((folder / "summary.json").read_text()).get("test") is not None]
    assert len(read_once) >= 40 and len(folders) - len(read_once) >= 36, "the v0.4 records are missing"
    for folder in folders:
        reads_file = folder / "test_reads.json"
        if folder not in read_once:
            assert not reads_file.exists() and not (folder / "test.json").exists(), f"{folder.name} read test"
            continue
        reads = json.loads(reads_file.read_text())
        assert reads["count"] == 1 and len(reads["reads"]) == 1, f"{folder.name}: test read {reads['count']} times"
        read = reads["reads"][0]
        epochs = len((folder / "metrics.jsonl").read_text().splitlines())
        assert read["by"] == "fptt train" and read["epoch"] == epochs, folder.name
        if (folder / "test.json").is_file():
            assert json.loads((folder / "test.json").read_text())["accuracy"] == read["metrics"]["accuracy"]


def test_paired_fields_against_a_plain_reference() -> None:
    """``paired_p`` gives the paired t-test p and the mean paired difference in the claim's scale,
    the seeds matched by name (here MNIST-1D's BRF rows, RESULTS §10.6)."""
    folder = "experiments/results/classification"
    spec = {"files": [f"{folder}/e1d_brf_bptt_s[0-9]/test.json"], "count": 5, "key": "accuracy", "reduce": "paired_p",
            "scale": 100, "against": {"files": [f"{folder}/e1d_brf_fptt_s[0-9]/test.json"], "count": 5,
                                      "key": "accuracy", "reduce": "value"}}
    score = {(method, seed): json.loads((ROOT / folder / f"e1d_brf_{method}_s{seed}" / "test.json").read_text())["accuracy"]
             for method in ("bptt", "fptt") for seed in range(5)}
    differences = [score["bptt", seed] - score["fptt", seed] for seed in range(5)]
    mean = sum(differences) / 5
    std = (sum((d - mean) ** 2 for d in differences) / 4) ** 0.5
    fields = _fields(spec)
    assert fields["difference"] == pytest.approx(100 * mean)
    t = mean / (std / 5 ** 0.5)
    assert statistics.paired_t_test([score["bptt", s] for s in range(5)], [score["fptt", s] for s in range(5)]).t \
        == pytest.approx(t)
    assert 0 < fields["p"] < 0.05
