"""The documentation holds together: links resolve, the names table is complete, the README is short.

- Every relative link in ``README.md`` and ``docs/*.md`` (``[text](path)``, ``![alt](path)``)
  points at a file of the repository, and its ``#anchor``, if any, at a heading of the target
  markdown file (GitHub's slug of the heading).
- The README links every page of ``docs/``.
- Every config group of ``conf/`` and every option in it (each YAML file's stem) is named in the
  README's "Every name, at a glance" table, and every ``GROUP=OPTION`` the table names exists.
- The README stays a front door: at most ``README_MAX_LINES`` lines.

Reads text files only (no package imports), so it runs in well under a second.
"""
from __future__ import annotations

import re
import unicodedata
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
DOCS = ROOT / "docs"
CONF = ROOT / "conf"
README_MAX_LINES = 260
TABLE_HEADING = "Every name, at a glance"

# conf/ folders that are not config groups users pick from the table: `local` holds personal,
# git-ignored overrides.
NOT_GROUPS = {"local"}
# How the table names an option of a group, when not as GROUP=OPTION: environment specs are
# picked with `python -m sandbox.env setup NAME`.
GROUP_MARKERS = {"env": "sandbox.env"}

FENCE = re.compile(r"^\s*(```|~~~)")
LINK = re.compile(r"!?\[(?P<text>[^\]]*)\]\((?P<target>[^)\s]+)(?:\s+\"[^\"]*\")?\)")
CODE_SPAN = re.compile(r"(`+)(.+?)\1")
HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
EXTERNAL = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")  # http:, https:, mailto:, ...


def markdown_files() -> list[Path]:
    return [README, *sorted(DOCS.glob("*.md"))]


def rel(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def prose_lines(path: Path):
    """(line number, line) of a markdown file outside fenced code blocks."""
    fenced = False
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if FENCE.match(line):
            fenced = not fenced
            continue
        if not fenced:
            yield number, line


def github_slug(heading: str) -> str:
    """The anchor GitHub gives a heading: its rendered text, lower-cased, punctuation dropped,
    spaces turned into hyphens."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # links and images: their text
    text = CODE_SPAN.sub(lambda m: m.group(2), text)  # code spans: their content
    text = re.sub(r"<[^>]+>", "", text)  # inline HTML tags
    text = text.replace("*", "").lower()
    kept = []
    for ch in text:
        category = unicodedata.category(ch)
        if ch in " -_" or category[0] in "LN" or category in ("Mn", "Mc", "Me", "Pc"):
            kept.append(ch)
    return "".join(kept).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """Every heading anchor of a markdown file, with GitHub's -1, -2 suffixes for repeats."""
    seen: dict[str, int] = {}
    out = set()
    for _, line in prose_lines(path):
        match = HEADING.match(line)
        if not match:
            continue
        slug = github_slug(match.group(2))
        if slug in seen:
            seen[slug] += 1
            slug = f"{slug}-{seen[slug]}"
        else:
            seen[slug] = 0
        out.add(slug)
    return out


def links(path: Path):
    """(line number, target) of every link of a markdown file, outside code."""
    for number, line in prose_lines(path):
        for match in LINK.finditer(CODE_SPAN.sub("", line)):
            yield number, match.group("target")


def relative_links():
    for path in markdown_files():
        for number, target in links(path):
            if not EXTERNAL.match(target):
                yield path, number, target


def test_relative_links_resolve():
    problems = []
    for path, number, target in relative_links():
        where = f"{rel(path)}:{number}: link ({target})"
        file_part, _, anchor = target.partition("#")
        target_path = (path.parent / file_part).resolve() if file_part else path
        if file_part:
            if ROOT not in target_path.parents and target_path != ROOT:
                problems.append(f"{where} leaves the repository; link to a file inside it")
                continue
            if not target_path.exists():
                base = rel(path.parent) + "/" if path.parent != ROOT else "the repository root"
                problems.append(
                    f"{where}: {rel(target_path)} does not exist (a link in {rel(path)} is read "
                    f"from {base}); fix the path or restore the file")
                continue
        if anchor:
            if target_path.suffix != ".md" or not target_path.is_file():
                problems.append(f"{where}: #{anchor} points into {rel(target_path)}, which is not "
                                "a markdown file; drop the anchor")
                continue
            known = anchors(target_path)
            if anchor not in known:
                problems.append(
                    f"{where}: {rel(target_path)} has no heading whose anchor is #{anchor}; "
                    f"its anchors are: {', '.join(sorted(known)) or '(no headings)'}")
    assert not problems, "broken links:\n" + "\n".join(problems)


def test_readme_links_every_docs_page():
    linked = {(README.parent / t.partition("#")[0]).resolve()
              for _, t in links(README) if not EXTERNAL.match(t) and t.partition("#")[0]}
    missing = [rel(p) for p in sorted(DOCS.glob("*.md")) if p.resolve() not in linked]
    assert not missing, (
        "README.md does not link these docs pages; add a line for each to its "
        "'The manuals' list: " + ", ".join(missing))


def test_headings_do_not_skip_levels():
    problems = []
    for path in markdown_files():
        level = 0
        for number, line in prose_lines(path):
            match = HEADING.match(line)
            if not match:
                continue
            new = len(match.group(1))
            if new > level + 1 and level:
                problems.append(f"{rel(path)}:{number}: a level-{new} heading follows a "
                                f"level-{level} one; use {'#' * (level + 1)} instead")
            level = new
    assert not problems, "\n".join(problems)


def names_table() -> list[str]:
    """The rows of the README's names table."""
    rows, inside = [], False
    for _, line in prose_lines(README):
        match = HEADING.match(line)
        if match:
            if inside:
                break
            inside = match.group(2).strip() == TABLE_HEADING
            continue
        if inside and line.startswith("|") and not re.match(r"^\|[\s|:-]+\|?$", line):
            rows.append(line)
    return rows[1:]  # the header row


def config_groups() -> dict[str, set[str]]:
    return {d.name: {f.stem for f in d.glob("*.yaml")}
            for d in sorted(CONF.iterdir())
            if d.is_dir() and d.name not in NOT_GROUPS and not d.name.startswith((".", "_"))}


def group_pattern(group: str) -> re.Pattern:
    # GROUP=OPTION, and the alternatives after it: `convert=a \| b \| c`
    return re.compile(rf"(?<![\w./+-]){re.escape(group)}=([\w.-]+)((?:\s*\\?\|\s*[\w.-]+)*)")


def named_options(rows: list[str], group: str) -> set[str]:
    """The options of ``group`` the table names: ``GROUP=OPTION`` (with ``\\| OTHER``
    alternatives) in a code span, and bare one-word code spans (`json`) in a row that names the
    group, as in 'also `json`, `csv`'."""
    pattern = group_pattern(group)
    marker = GROUP_MARKERS.get(group)
    found = set()
    for row in rows:
        spans = [m.group(2) for m in CODE_SPAN.finditer(row)]
        in_row = False
        for span in spans:
            for match in pattern.finditer(span):
                in_row = True
                found.add(match.group(1))
                found.update(re.findall(r"[\w.-]+", match.group(2)))
            if marker and marker in span:
                in_row = True
        if in_row:
            found.update(s for s in spans if re.fullmatch(r"[\w.-]+", s))
    return found


def test_readme_is_short():
    lines = README.read_text(encoding="utf-8").splitlines()
    assert len(lines) <= README_MAX_LINES, (
        f"README.md has {len(lines)} lines, more than {README_MAX_LINES}: it is the front door; "
        "move the detail into a page of docs/ and link it from README.md's 'The manuals'")


def test_names_table_exists():
    assert names_table(), (f"README.md has no table under a heading '{TABLE_HEADING}'; "
                           "tests/test_docs.py reads it")


@pytest.mark.parametrize("group", sorted(config_groups()))
def test_names_table_names_every_config_option(group):
    rows = names_table()
    options = config_groups()[group]
    named = named_options(rows, group)
    how = ("`python -m sandbox.env ... NAME` and each NAME in backticks" if group in GROUP_MARKERS
           else f"`{group}=OPTION`")
    assert named, (
        f"conf/{group}/ is a config group, but README.md's '{TABLE_HEADING}' table never names "
        f"it: add a row that shows {how}")
    missing = sorted(options - named)
    assert not missing, (
        f"README.md's '{TABLE_HEADING}' table does not name "
        + ", ".join(f"`{group}={o}` (conf/{group}/{o}.yaml)" for o in missing)
        + ": add each, written GROUP=OPTION, to the row that describes it, or a new row")


def test_names_table_names_only_existing_options():
    groups = config_groups()
    problems = []
    for row in names_table():
        for span in (m.group(2) for m in CODE_SPAN.finditer(row)):
            for group, options in groups.items():
                for match in group_pattern(group).finditer(span):
                    named = [match.group(1), *re.findall(r"[\w.-]+", match.group(2))]
                    problems += [f"`{group}={o}`: there is no conf/{group}/{o}.yaml; fix the "
                                 f"name in README.md's table or add the file"
                                 for o in named if o not in options]
    assert not problems, "\n".join(problems)
