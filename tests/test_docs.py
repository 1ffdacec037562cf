"""The documentation holds together (issue #26): README.md is a landing page that fits on a screen,
every relative link in it and in docs/*.md leads to a file that exists (and, for ``#anchors`` into
Markdown, to a heading that exists), every page of docs/ is reachable from the README, the
teacher's guide exists in English and French, and the README keeps the test-command marker that
``.ci/run`` and ``tools/update_pins.sh`` read."""
from __future__ import annotations

import re
import unicodedata
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
DOCS = sorted((ROOT / "docs").glob("*.md"))
PAGES = [README, *DOCS]
GUIDES = ("docs/teacher-guide.en.md", "docs/guide-enseignant.fr.md")
MAX_README_LINES = 220

FENCE = re.compile(r"^(```|~~~).*?^\1[^\n]*$", re.M | re.S)
CODE = re.compile(r"`[^`\n]*`")
LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
HEADING = re.compile(r"^#{1,6}\s+(.*?)\s*#*\s*$", re.M)


def prose(text: str) -> str:
    """The page without code: a path in a code block or in backticks is not a link."""
    return CODE.sub("", FENCE.sub("", text))


def links(page: Path) -> list[str]:
    return LINK.findall(prose(page.read_text(encoding="utf-8")))


def relative(target: str) -> bool:
    return not re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I)


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[*`]|\[([^\]]*)\]\([^)]*\)", r"\1", heading).strip().lower()
    kept = "".join(c for c in text if c in " -_" or unicodedata.category(c)[0] in "LN")
    return kept.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    seen: dict[str, int] = {}
    found = set()
    for heading in HEADING.findall(FENCE.sub("", page.read_text(encoding="utf-8"))):
        base = slug(heading)
        n = seen.get(base, 0)
        seen[base] = n + 1
        found.add(base if n == 0 else f"{base}-{n}")
    return found


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_resolves(page):
    broken = []
    for target in links(page):
        if not relative(target):
            continue
        path, _, anchor = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        if not file.exists():
            broken.append(f"{target} (no such file)")
        elif anchor and file.suffix == ".md" and anchor not in anchors(file):
            broken.append(f"{target} (no heading with that anchor in {file.relative_to(ROOT)})")
    assert broken == [], f"{page.relative_to(ROOT)}: broken links: {broken}"


def test_the_readme_fits_on_a_screen():
    lines = README.read_text(encoding="utf-8").count("\n")
    assert lines <= MAX_README_LINES, f"README.md has {lines} lines (at most {MAX_README_LINES}): move details to docs/"


def test_the_teachers_guide_exists_in_both_languages_and_the_readme_links_it():
    targets = {(README.parent / t.partition("#")[0]).resolve() for t in links(README) if relative(t)}
    for guide in GUIDES:
        assert (ROOT / guide).exists(), f"{guide} is missing"
        assert (ROOT / guide).resolve() in targets, f"README.md does not link {guide}"


def test_every_page_of_docs_is_linked_from_the_readme():
    targets = {(README.parent / t.partition("#")[0]).resolve() for t in links(README) if relative(t)}
    orphans = [p.name for p in DOCS if p.resolve() not in targets]
    assert orphans == [], f"docs/ pages no link from README.md leads to: {orphans}"


def test_the_readme_keeps_the_test_command_marker():
    """``.ci/run`` runs the command this line names (``sed -n 's/^<!-- test-command: \\(.*\\) -->$/\\1/p'``)."""
    commands = re.findall(r"^<!-- test-command: (.*) -->$", README.read_text(encoding="utf-8"), re.M)
    assert commands == ["python -m pytest -q"]
    assert "```bash\npython -m pytest -q\n```" in README.read_text(encoding="utf-8")
