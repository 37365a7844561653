"""benchmarks/results/ holds exactly the files the README, docs and model cards cite."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"


def citing_text() -> str:
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), *sorted((ROOT / "models").glob("*/README.md")),
             *sorted(RESULTS.rglob("*.md"))]
    return "\n".join(page.read_text(encoding="utf-8") for page in pages)


def test_every_results_file_is_cited():
    text = citing_text()
    uncited = []
    for path in sorted(p for p in RESULTS.rglob("*") if p.is_file()):
        relative = path.relative_to(RESULTS)
        folder = relative.parts[0] if len(relative.parts) > 1 else None
        own_page = path.parent / "README.md"
        if str(relative) in text:
            continue
        if folder is None and path.name in text:
            continue
        if folder is not None and f"{folder}/" in text and (
                path.name == "README.md" or path.name in text
                or (own_page.is_file() and path.name in own_page.read_text(encoding="utf-8"))):
            continue
        uncited.append(str(relative))
    assert uncited == []


def test_every_cited_results_path_exists():
    text = citing_text()
    cited = {m.rstrip(".,;:)`") for m in re.findall(r"benchmarks/results/[\w./*-]+", text)}
    missing = sorted(c for c in cited if "*" not in c and not (ROOT / c).exists())
    assert missing == []
