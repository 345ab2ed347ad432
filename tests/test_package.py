"""The house rules of the package: one installed name, imports that point one
way, no import cycles (importlib's string imports included), no product
module that imports tests."""

import ast
import importlib.resources
import os
import re
import subprocess
import sys

import pytest

from tests.repo import REPO_ROOT

PACKAGES = ("transforms", "pipelines", "expansion_service")
_MODULE_NAME = re.compile(r"^featurebridge(\.[a-z_][a-z0-9_]*)+$")


def _modules():
    """{module name: path} of every product module."""
    found = {}
    for package in PACKAGES:
        for name in sorted(os.listdir(os.path.join(REPO_ROOT, package))):
            if name.endswith(".py"):
                module = f"featurebridge.{package}" + ("" if name == "__init__.py" else f".{name[:-3]}")
                found[module] = os.path.join(REPO_ROOT, package, name)
    return found


def _imports(path, modules):
    """Product modules `path` imports: import statements anywhere in the file
    (lazy ones inside functions too) and module names in string constants
    (importlib.import_module tables)."""
    tree = ast.parse(open(path, encoding="utf-8").read(), path)
    targets = set()
    bare = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and _MODULE_NAME.match(node.value):
            names = [node.value]
        else:
            continue
        for name in names:
            if name.split(".")[0] in PACKAGES + ("tests",):
                bare.add(name)
            # "pkg.mod.Name" -> the longest prefix that is a module.
            while name and name not in modules:
                name = name.rpartition(".")[0]
            if name and not name.count(".") < 2:
                targets.add(name)
    return targets, bare


@pytest.fixture(scope="module")
def graph():
    modules = _modules()
    edges, bare = {}, {}
    for module, path in modules.items():
        edges[module], bare[module] = _imports(path, modules)
        edges[module].discard(module)
    return edges, bare


def test_no_product_module_imports_tests_or_bare_package_names(graph):
    _, bare = graph
    offenders = {m: sorted(names) for m, names in bare.items() if names}
    assert not offenders, f"import featurebridge.<package>, never the folder name or tests: {offenders}"


def test_benchmarks_import_no_tests():
    folder = os.path.join(REPO_ROOT, "benchmarks")
    modules = _modules()
    for name in sorted(os.listdir(folder)):
        if name.endswith(".py"):
            _, bare = _imports(os.path.join(folder, name), modules)
            assert not bare, f"benchmarks/{name} imports {sorted(bare)}"


def test_the_library_imports_neither_the_jobs_nor_the_service(graph):
    edges, _ = graph
    wrong = {
        m: sorted(t for t in targets if not t.startswith("featurebridge.transforms"))
        for m, targets in edges.items()
        if m.startswith("featurebridge.transforms")
    }
    assert not {m: t for m, t in wrong.items() if t}


def test_no_import_cycles(graph):
    edges, _ = graph
    # A package's __init__ runs before its modules; the lazy export table in
    # featurebridge.transforms.__init__ names modules, so an edge back into
    # an __init__ from one of its own modules is the parent, not a cycle.
    state, stack, cycles = {}, [], []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for target in sorted(edges.get(node, ())):
            if target in PACKAGE_INITS and node.startswith(target + "."):
                continue
            if state.get(target) == "open":
                cycles.append(stack[stack.index(target):] + [target])
            elif target not in state:
                visit(target)
        stack.pop()
        state[node] = "done"

    PACKAGE_INITS = {f"featurebridge.{p}" for p in PACKAGES}
    for node in sorted(edges):
        if node not in state:
            visit(node)
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(c) for c in cycles)


def test_runner_configs_ship_with_the_package():
    shipped = {p.name for p in importlib.resources.files("featurebridge.runner_configs").iterdir()}
    assert {"direct.yaml", "portable.yaml", "flink-local.yaml", "spark-local.yaml"} <= shipped, shipped


def test_version_flag():
    result = subprocess.run(
        [sys.executable, "-m", "featurebridge.pipelines.cli", "--version"],
        capture_output=True, text=True, timeout=60, cwd=REPO_ROOT,
    )
    from importlib import metadata

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"featurebridge {metadata.version('featurebridge')}"


def test_one_error_base():
    from featurebridge.transforms import errors

    for name in errors.__all__:
        cls = getattr(errors, name)
        assert issubclass(cls, errors.FeaturebridgeError), name
