"""README.md and docs/*.md stay true: every script, file, test and --flag they name exists, every
relative link resolves, README's status names the tests behind each claim, and docs/fidelity.md is
what tests/test_defaults.py generates."""
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
                  "--system-site-packages", "--fix"}


def known_flags():
    text = "".join(open(p).read() for p in SOURCES if os.path.isfile(p))
    return set(re.findall(r"--[a-z][a-z0-9_-]*", text))


@pytest.mark.parametrize("doc", DOCS, ids=os.path.basename)
def test_what_a_page_names_exists(doc):
    text = open(doc).read()
    here = os.path.dirname(doc)
    for target in re.findall(r"\]\(([^)#\s]+)\)", text):  # relative links
        if not re.match(r"[a-z]+://", target):
            assert os.path.exists(os.path.join(here, target)), f"{doc}: broken link {target}"
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
