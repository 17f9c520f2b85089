"""The layout the code map promises: the method (tool/*.py) and the networks (network/) import
nothing of the run management (tool/engine/), at module level or inside a function."""
import ast
import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
METHOD = sorted(f"tool/{n}" for n in os.listdir(os.path.join(ROOT, "tool")) if n.endswith(".py"))
NETWORK = sorted(f"network/{n}" for n in os.listdir(os.path.join(ROOT, "network")) if n.endswith(".py"))


def imported_modules(path, root=ROOT):
    """Every module an `import` or `from ... import` anywhere in the file names (its names too,
    for `from tool import engine`)."""
    with open(os.path.join(root, path)) as f:
        tree = ast.parse(f.read(), path)
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def test_the_method_modules_are_the_ones_the_code_map_names():
    names = {os.path.basename(p)[:-3] for p in METHOD} - {"__init__"}
    assert {"losses", "cam", "crf", "affinity", "randomwalk", "metrics", "imutils", "optim", "batchnorm",
            "vis"} <= names


@pytest.mark.parametrize("path", METHOD + NETWORK)
def test_method_and_networks_import_no_run_management(path):
    engine = sorted(m for m in imported_modules(path) if m == "tool.engine" or m.startswith("tool.engine."))
    assert not engine, f"{path} imports {engine}"


def test_the_check_sees_an_import_inside_a_function(tmp_path):
    (tmp_path / "m.py").write_text("def f():\n    from tool import engine\n    import tool.engine.files\n")
    assert {"tool.engine", "tool.engine.files"} <= imported_modules("m.py", root=str(tmp_path))
