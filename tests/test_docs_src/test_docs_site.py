"""The documentation site itself: every example is included somewhere, every include exists,
pages carry no untested Python, and the nav lists every page."""

import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
DOCS_SRC = ROOT / "docs_src"
PAGES = sorted(DOCS.glob("*.md"))
SNIPPET = re.compile(r'^\s*--8<-- "([^"]+)"\s*$', re.MULTILINE)
FENCE = re.compile(r"^([ \t]*)```(\w+)[^\n]*\n(.*?)^\1```", re.MULTILINE | re.DOTALL)


def _includes() -> set[str]:
    return {match for page in PAGES for match in SNIPPET.findall(page.read_text())}


def test_pages_exist() -> None:
    assert {page.name for page in PAGES} >= {"index.md", "api.md", "faq.md", "changelog.md"}


def test_every_include_exists() -> None:
    missing = sorted(path for path in _includes() if not (ROOT / path).is_file())
    assert missing == []


def test_every_example_is_included() -> None:
    examples = {
        path.relative_to(ROOT).as_posix()
        for path in DOCS_SRC.rglob("*")
        if path.is_file()
        and path.suffix in (".py", ".yaml", ".sh")
        and "__pycache__" not in path.parts
        and not (path.name == "__init__.py" and not path.read_text().strip())  # empty markers
    }
    assert examples, "no examples found"
    assert sorted(examples - _includes()) == []


@pytest.mark.parametrize("page", PAGES, ids=lambda page: page.name)
def test_python_on_pages_comes_from_tested_files(page: Path) -> None:
    for _, language, body in FENCE.findall(page.read_text()):
        if language in ("python", "py", "yaml"):
            lines = [line for line in body.strip().splitlines() if line.strip()]
            assert len(lines) == 1, f"{page.name}: inline {language} block:\n{body}"
            assert SNIPPET.match(lines[0]), f"{page.name}: inline {language} block:\n{body}"


def test_nav_lists_every_page() -> None:
    nav = set(re.findall(r":\s*(\S+\.md)\s*$", (ROOT / "mkdocs.yml").read_text(), re.MULTILINE))
    assert {page.name for page in PAGES} <= nav
    assert "benchmarks.md" in nav


def test_timeline_figure_is_valid_svg() -> None:
    root = ET.parse(DOCS / "img" / "timeline.svg").getroot()
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    assert "img/timeline.svg" in (DOCS / "scheduling.md").read_text()


def test_changelog_has_an_unreleased_section() -> None:
    changelog = (ROOT / "CHANGELOG.md").read_text()
    assert changelog.startswith("# Changelog")
    assert "\n## Unreleased\n" in changelog
    assert '--8<-- "CHANGELOG.md"' in (DOCS / "changelog.md").read_text()
