"""README.md and docs/*.md stay true: every script, file, test and --flag they name exists, every
relative link and #anchor resolves, no heading is empty, "below" and "above" point at something,
no sentence is written twice, README's status names the tests behind each claim, and
docs/fidelity.md is what tests/test_defaults.py generates."""
import ast
import glob
import os
import re
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOCS = [os.path.join(ROOT, "README.md"), *sorted(glob.glob(os.path.join(ROOT, "docs", "*.md")))]
SOURCES = [*glob.glob(os.path.join(ROOT, "*.py")), *glob.glob(os.path.join(ROOT, "scripts", "*")),
           *glob.glob(os.path.join(ROOT, "tool", "**", "*.py"), recursive=True),
           *glob.glob(os.path.join(ROOT, "network", "*.py")), *glob.glob(os.path.join(ROOT, "voc12", "*.py")),
           *glob.glob(os.path.join(ROOT, "tests", "*.py"))]


# flags of other tools the pages show (torchrun, pip, ruff)
EXTERNAL_FLAGS = {"--nproc_per_node", "--nnodes", "--node_rank", "--master_addr", "--master_port", "--standalone",
                  "--system-site-packages", "--fix", "--index-url"}


def known_flags():
    text = "".join(open(p).read() for p in SOURCES if os.path.isfile(p))
    return set(re.findall(r"--[a-z][a-z0-9_-]*", text))


@pytest.mark.parametrize("doc", DOCS, ids=os.path.basename)
def test_what_a_page_names_exists(doc):
    text = open(doc).read()
    here = os.path.dirname(doc)
    for target, anchor in re.findall(r"\]\(([^)#\s]*)(?:#([^)\s]*))?\)", text):  # relative links
        if re.match(r"[a-z]+://", target):
            continue
        path = os.path.join(here, target) if target else doc
        assert os.path.exists(path), f"{doc}: broken link {target}"
        if anchor:
            assert anchor in heading_anchors(open(path).read()), f"{doc}: no heading #{anchor} in {target or doc}"
    for path in set(re.findall(r"`((?:scripts|tool|network|voc12|tests|docs)/[\w./-]+)`", text)):
        assert os.path.exists(os.path.join(ROOT, path.split(":")[0])), f"{doc}: {path} does not exist"
    for script in set(re.findall(r"\b(\w+\.py)\b", text)):
        found = glob.glob(os.path.join(ROOT, "**", script), recursive=True)
        assert found or script in ("sitecustomize.py",), f"{doc}: {script} does not exist"
    flags = known_flags() | EXTERNAL_FLAGS
    for flag in set(re.findall(r"(?<![\w-])--[a-z][a-z0-9_-]*[a-z0-9]", text)):
        assert flag in flags, f"{doc}: {flag} is no flag of any script"


def defined_tests(path):
    return {n.name for n in ast.parse(open(path).read()).body if isinstance(n, ast.FunctionDef)
            and n.name.startswith("test_")}


@pytest.mark.parametrize("doc", DOCS, ids=os.path.basename)
def test_every_cited_test_exists(doc):
    for path, name in set(re.findall(r"(tests/\w+\.py)::(\w+)", open(doc).read())):
        assert os.path.isfile(os.path.join(ROOT, path)), f"{doc}: {path} does not exist"
        assert name in defined_tests(os.path.join(ROOT, path)), f"{doc}: no test {path}::{name}"


def test_every_status_claim_names_its_tests():
    text = open(os.path.join(ROOT, "README.md")).read()
    status = text[text.index("**Status.**"):text.index("\n## ")]
    claims = re.split(r"\n- ", status.split("\n\n")[0])[1:]
    assert len(claims) >= 3
    for claim in claims:
        assert re.search(r"`tests/\w+\.py(::\w+)?`", claim), f"README status: no test named in {claim[:60]!r}"


def test_fidelity_page_is_generated_from_the_defaults_table():
    sys.path.insert(0, os.path.join(ROOT, "scripts"))
    import fidelity

    assert fidelity.main(["--check"]) == 0, "run python scripts/fidelity.py"


def test_readme_is_a_guide():
    text = open(os.path.join(ROOT, "README.md")).read()
    assert len(text.splitlines()) <= 230 and "bash scripts/test.sh" in text and "bash scripts/demo.sh" in text
    for doc in DOCS:  # no words that only make sense inside the project's development
        for words in ("the issue", "the report", "closing note"):
            assert words not in open(doc).read().lower(), (doc, words)


def prose_lines(text):
    """(line number, line) of the lines outside fenced code blocks."""
    fenced = False
    for number, line in enumerate(text.splitlines(), 1):
        if line.lstrip().startswith("```"):
            fenced = not fenced
        elif not fenced:
            yield number, line


def headings(text):
    """(line number, level, title) of the Markdown headings outside code blocks."""
    return [(n, len(m.group(1)), m.group(2)) for n, line in prose_lines(text)
            if (m := re.match(r"(#{1,6})\s+(.*\S)", line))]


def heading_anchors(text):
    """GitHub's anchors of a page's headings: lower case, punctuation dropped, spaces as hyphens."""
    return {re.sub(r"[^\w\- ]", "", title.lower()).replace(" ", "-") for _, _, title in headings(text)}


def test_heading_anchors_follow_github():
    text = "# Page\n\n## The arms (`train_seam.py`)\n\n```\n# a comment\n```\n## CPU measurements of 2026-12-06\n"
    assert heading_anchors(text) == {"page", "the-arms-train_seampy", "cpu-measurements-of-2026-12-06"}


def empty_headings(text):
    """Headings with no text of their own before the next heading of the same or a higher level."""
    lines = text.splitlines()
    found = headings(text)
    empty = []
    for i, (number, level, title) in enumerate(found):
        end = next((n for n, lv, _ in found[i + 1:] if lv <= level), len(lines) + 1)
        deeper = next((n for n, lv, _ in found[i + 1:] if lv > level), end)
        if not any(line.strip() for line in lines[number:min(end, deeper) - 1]) and deeper == end:
            empty.append(title)
    return empty


# "below" / "above" followed by one of these (or a number) compare ("2 points below it"); otherwise
# the word points at part of the page, and must name a thing of a kind the page has on that side.
COMPARED = {"it", "them", "the", "its", "their", "a", "an", "that", "this", "chance", "zero", "all"}
LISTING = r"^\s*(\||- |\d+\. )"  # a table, or a bulleted or numbered list
POINTED_AT = {"table": r"^\s*\|", "figure": r"!\[", "image": r"!\[", "plot": r"!\[", "command": r"^\s*```",
              "commands": r"^\s*```", "block": r"^\s*```", "steps": LISTING, "rows": LISTING, "list": LISTING}


def dangling_positions(text):
    """Sentences whose "below" / "above" points at nothing: neither a comparison nor "the table
    below" (figure, command, block) with such a thing on that side of the page."""
    lines = text.splitlines()
    kept = dict(prose_lines(text))
    prose = "\n".join(kept.get(n, "") for n in range(1, len(lines) + 1))  # code blanked, lines kept
    bad = []
    for m in re.finditer(r"(\S+)\s+[(\"']?(below|above)\b([^\w\s]*)\s*(\S*)", prose):
        before, word, punct, after = m.group(1).lower().strip("(\"'`"), m.group(2), m.group(3), m.group(4)
        if not punct and (after.lower().strip("(\"'`,.;:)") in COMPARED or re.match(r"[\d.]", after)):
            continue
        line = prose[:m.start(2)].count("\n") + 1
        side = lines[line:] if word == "below" else lines[:line - 1]
        if before not in POINTED_AT or not any(re.search(POINTED_AT[before], s) for s in side):
            bad.append(f"line {line}: {before} {word}{punct}")
    return bad


def test_the_page_checks_catch_what_they_should():
    page = "# A\n\nText.\n\n## B\n\n### C\n\nMore, details below. A plot (below).\n\n## D\n"
    assert empty_headings(page) == ["D"]  # B has a subsection with text; D has nothing
    assert dangling_positions(page) == ["line 9: details below.", "line 9: plot below)."]
    ok = "2 points below it; SEAM above the baseline; below 0.05.\n\nIn the table below:\n\n| a |\n|---|\n"
    assert dangling_positions(ok) == []
    assert dangling_positions("The table below: none.\n") == ["line 1: table below:"]
    assert dangling_positions("| a |\n|---|\n\nthe table above says so.\n") == []
    assert dangling_positions("It prints the steps below.\n\n- one\n") == []
    assert dangling_positions("- one\n\nIt prints the steps below.\n") == ["line 3: steps below."]


@pytest.mark.parametrize("doc", DOCS, ids=os.path.basename)
def test_no_empty_heading_and_no_below_or_above_that_points_at_nothing(doc):
    text = open(doc).read()
    assert empty_headings(text) == [], f"{doc}: empty headings"
    assert dangling_positions(text) == [], f"{doc}: name the heading (a link) instead of below / above"


def sentences(text):
    """The prose sentences of a page of 60 characters or more, whitespace normalised (tables,
    headings and code left out)."""
    paragraphs, current = [], []
    for _, line in [*prose_lines(text), (0, "")]:
        if line.strip() and not line.lstrip().startswith(("#", "|")):
            current.append(line.strip())
        elif current:
            paragraphs.append(" ".join(current))
            current = []
    return [s for p in paragraphs for s in re.split(r"(?<=[.;:])\s+", p) if len(s) >= 60]


def test_each_fact_is_written_once():
    where = {}
    for doc in DOCS:
        for sentence in sentences(open(doc).read()):
            first = where.setdefault(sentence, doc)
            assert first == doc and sentences(open(doc).read()).count(sentence) == 1, (
                f"written twice ({os.path.basename(first)}, {os.path.basename(doc)}): {sentence[:100]}")


def variables_read(*scripts):
    """The environment variables bash scripts read (each script may source the others): those
    tested with a default (${NAME:-x}, ${NAME:=x}, ${NAME:+x}, ...) and those used but assigned in
    none of them."""
    code = "\n".join(line for text in scripts for line in text.splitlines() if not line.lstrip().startswith("#"))
    tested = set(re.findall(r"\$\{([A-Z][A-Z0-9_]*):?[-=+?]", code))
    used = set(re.findall(r"\$\{?([A-Z][A-Z0-9_]*)(?![\w\[])", code))
    assigned = set(re.findall(r"(?:^|[\s;(&|])(?:export\s+|local\s+|declare\s+(?:-\w+\s+)*)?([A-Z][A-Z0-9_]*)"
                              r"(?:\[[^\]]*\])?\+?=", code, re.M))
    assigned |= set(re.findall(r"\bfor\s+([A-Z][A-Z0-9_]*)\s+in\b", code))
    return (tested | (used - assigned)) - {"BASH_SOURCE", "PWD", "PYTHONPATH"}  # the shell's and Python's own


def test_variables_read_finds_defaults_and_unassigned_names():
    script = 'X="${WORK_DIR:-work}"\n: "${DEMO_N:=4}"\nY=1\necho "$Y $GPUS ${FLAGS[a]+set} $X"\n# $IN_A_COMMENT\n'
    assert variables_read(script) == {"WORK_DIR", "DEMO_N", "GPUS"}
    assert variables_read(script, "GPUS=0\n") == {"WORK_DIR", "DEMO_N"}  # assigned in a sourced script


def test_every_variable_the_scripts_read_is_in_the_table():
    text = open(os.path.join(ROOT, "docs", "stages.md")).read()
    section = text.split("\n## Environment variables\n", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| `")]
    in_table = [name for row in rows for name in re.findall(r"`([A-Z][A-Z0-9_]*)`", row.split("|")[1])]
    assert len(in_table) == len(set(in_table)), "a variable has two rows"
    scripts = {os.path.basename(p): open(p).read() for p in sorted(glob.glob(os.path.join(ROOT, "scripts", "*.sh")))}
    read = variables_read(*scripts.values())
    assert {"TRAIN_LIST", "SKIP_CRF", "GPUS", "COCO_SEG_STEPS", "TOLERANCE", "DEMO_TINY"} <= read
    missing = sorted(read - set(in_table))
    assert not missing, f"docs/stages.md, Environment variables: no row for {missing}"
    assert not set(in_table) - read, f"rows for variables no script reads: {set(in_table) - read}"
