"""The documentation: the MkDocs site builds strictly, and the README stays short with links that resolve."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import ROOT

README = ROOT / "README.md"
MKDOCS = [sys.executable, "-m", "mkdocs"]


def mkdocs_build(root: Path, site: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}  # Material's end-of-life banner
    return subprocess.run([*MKDOCS, "build", "--strict", "-f", str(root / "mkdocs.yml"), "-d", str(site)],
                          cwd=root, capture_output=True, text=True, env=env, timeout=300)


def nav_pages(nav) -> list[str]:
    pages = []
    for entry in nav:
        value = next(iter(entry.values())) if isinstance(entry, dict) else entry
        pages += nav_pages(value) if isinstance(value, list) else [value]
    return pages


def test_the_site_builds_strictly_with_every_page_in_the_nav_and_the_readme_snippets(tmp_path):
    proc = mkdocs_build(ROOT, tmp_path / "site")
    assert proc.returncode == 0, proc.stderr[-3000:]
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text())
    pages = nav_pages(config["nav"])
    on_disk = sorted(str(p.relative_to(ROOT / "docs")) for p in (ROOT / "docs").rglob("*.md"))
    assert sorted(pages) == on_disk  # every page is in the nav, and the nav names no missing page
    for page in pages:  # each became a page of the site
        assert (tmp_path / "site" / ("" if page == "index.md" else page[:-3]) / "index.html").is_file()
    # Getting started shows the README's set-up commands and demo output (one copy, included by pymdownx.snippets).
    html = re.sub(r"<[^>]+>", "", (tmp_path / "site" / "getting-started" / "index.html").read_text())
    assert "make demo   # creates .venv" in html and "baseline_resnet20" in html and "--8&lt;--" not in html
    # The reference is generated: every subcommand's --help (options and class arguments) and the API's docstrings.
    options = re.sub(r"<[^>]+>", "", (tmp_path / "site" / "reference" / "options" / "index.html").read_text())
    for option in ("--trainer.max_epochs", "--drift.n_reps", "--budget.epochs", "--fidelity.eta", "--search.fit_chip",
                   "--top_k", "--model.digital_warmup_fraction", "--data.silence_ratio", "--candidates"):
        assert option in options, option
    assert "<!-- cli-help" not in options
    api = re.sub(r"<[^>]+>", "", (tmp_path / "site" / "reference" / "api" / "index.html").read_text())
    assert "Train one search-space architecture hardware-aware" in api and "DriftEvaluation" in api
    # The images the findings pages show are copied with the site.
    assert (tmp_path / "site" / "findings" / "img" / "coverage.png").stat().st_size > 1000


def test_a_broken_link_or_a_page_missing_from_the_nav_fails_the_build(tmp_path):
    root = tmp_path / "checkout"
    (root / "docs").mkdir(parents=True)
    config = {"site_name": "t", "theme": {"name": "material"}, "nav": [{"Home": "index.md"}],
              "validation": yaml.safe_load((ROOT / "mkdocs.yml").read_text())["validation"]}
    (root / "mkdocs.yml").write_text(yaml.safe_dump(config))
    (root / "docs" / "index.md").write_text("# Home\n\n[other](other.md)\n")
    (root / "docs" / "other.md").write_text("# Other\n")
    proc = mkdocs_build(root, tmp_path / "site")
    assert proc.returncode != 0 and "other.md" in proc.stderr and "not included in the \"nav\"" in proc.stderr
    config["nav"].append({"Other": "other.md"})
    (root / "mkdocs.yml").write_text(yaml.safe_dump(config))
    assert mkdocs_build(root, tmp_path / "site").returncode == 0
    (root / "docs" / "other.md").write_text("# Other\n\n[gone](gone.md) and [anchor](index.md#no-such-heading)\n")
    proc = mkdocs_build(root, tmp_path / "site")
    assert proc.returncode != 0 and "gone.md" in proc.stderr and "no-such-heading" in proc.stderr


def relative_links(markdown: str) -> list[str]:
    links = re.findall(r"\]\(([^)\s]+)\)", markdown)
    return [link for link in links if not re.match(r"[a-z]+:", link)]


def test_the_readme_is_short_and_every_relative_link_resolves():
    text = README.read_text()
    assert len(text.splitlines()) <= 250
    links = relative_links(text)
    assert links, "the README links to its docs"
    for link in links:
        path = link.split("#", 1)[0]
        assert path and (ROOT / path).exists(), f"README.md links to {link}, which does not exist"


def test_the_readme_link_check_catches_a_missing_file():
    assert relative_links("[a](docs/x.md) [b](https://x.org/y) [c](docs/y.md#z)") == ["docs/x.md", "docs/y.md#z"]
    assert not (ROOT / "docs/x.md").exists()
