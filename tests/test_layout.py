"""The package's shape: one import root, a lean `import highway`, and imports that point one way.

    kernels ← layers ← harness / study ← CLI;   reports ← schema
"""
import ast
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# Source folder → import name, as pyproject.toml's package-dir maps them.
PACKAGE_DIRS = {"highway": "highway", "kernels": "highway.kernels", "bench": "highway.bench",
                "reports": "highway.reports"}
HEAVY = ("pandas", "seaborn", "matplotlib", "sklearn", "pytest", "tqdm")


def project_modules() -> dict[str, Path]:
    """Every module of the package by its import name."""
    modules = {}
    for folder, package in PACKAGE_DIRS.items():
        for path in (ROOT / folder).rglob("*.py"):
            parts = path.relative_to(ROOT / folder).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            modules[".".join((package, *parts))] = path
    return modules


def imports_of(path: Path, name: str, modules) -> set[str]:
    """The project modules that `path` imports anywhere in it, inside functions too."""
    found = set()
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        targets = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the package, up level − 1 parents
                parents = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parents + ([base] if base else []))
            targets = [base] + [f"{base}.{a.name}" for a in node.names]
        for target in targets:
            while target and target not in modules:
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def import_graph():
    modules = project_modules()
    return {name: imports_of(path, name, modules) for name, path in modules.items()}


def layer_of(module: str) -> str:
    for prefix, layer in (("highway.kernels", "kernels"), ("highway.bench.schema", "schema"),
                          ("highway.bench.harness", "harness"), ("highway.bench.bench_layers", "harness"),
                          ("highway.bench.study", "study"), ("highway.bench", "cli"), ("highway.reports", "reports")):
        if module == prefix or module.startswith(prefix + "."):
            return layer
    return "layers"


# Which layers each layer may import (itself included).
ALLOWED = {
    "kernels": {"kernels"},
    "layers": {"layers", "kernels"},
    "schema": {"schema"},
    "harness": {"harness", "layers", "kernels", "schema"},
    "study": {"study", "harness", "layers", "kernels", "schema"},
    "reports": {"reports", "schema"},
    "cli": {"cli", "harness", "study", "reports", "layers", "kernels", "schema"},
}


def test_the_graph_sees_the_imports_it_should():
    graph = import_graph()
    assert "highway.kernels.launch" in graph["highway.kernels.highway_linear"]
    assert "highway.ops" in graph["highway.functional"]  # an import inside a function counts
    assert "highway.kernels" in graph["highway.ops"]
    assert "highway.bench.schema" in graph["highway.reports.loading"]


def test_no_import_cycle():
    graph = import_graph()
    state, stack = {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                cycle = stack[stack.index(nxt):] + [nxt]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module)


def test_imports_point_one_way():
    bad = [f"{m} ({layer_of(m)}) imports {t} ({layer_of(t)})" for m, targets in import_graph().items()
           for t in targets if layer_of(t) not in ALLOWED[layer_of(m)]]
    assert not bad, "\n".join(bad)


def run_python(code: str, cwd) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True, timeout=300)


def test_import_highway_loads_nothing_heavy(tmp_path):
    # torch itself may load some of these (torch.hub imports tqdm when it is installed): count only what
    # importing highway adds to what torch, triton and numpy load.
    code = ("import sys, torch, numpy\n"
            "try:\n    import triton\nexcept ImportError:\n    pass\n"
            "before = {m.split('.')[0] for m in sys.modules}\n"
            "import highway, highway.functional, highway.gates, highway.gate_bias\n"
            f"print(sorted(({{m.split('.')[0] for m in sys.modules}} - before) & set({HEAVY!r})))")
    result = run_python(code, tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]", f"import highway loaded {result.stdout.strip()}"


def test_old_top_level_names_are_gone(tmp_path):
    code = ("import importlib.util, pathlib\n"
            "for name in ('kernels', 'bench', 'reports'):\n"
            "    spec = importlib.util.find_spec(name)\n"
            f"    ours = spec is not None and spec.origin and pathlib.Path(spec.origin).is_relative_to({str(ROOT)!r})\n"
            "    print(name, 'ours' if ours else 'absent')\n")
    result = run_python(code, tmp_path)
    assert result.returncode == 0, result.stderr
    assert "ours" not in result.stdout, result.stdout
    result = run_python("import highway.kernels, highway.bench.cli, highway.reports.summaries", tmp_path)
    assert result.returncode == 0, result.stderr


def why_no_wheel_builds_here() -> str | None:
    """Why this python cannot build a wheel without build isolation (so offline), or None. Setuptools before 70.1
    builds wheels only with the `wheel` package, which a fresh venv of python 3.11 lacks beside its setuptools 65;
    3.12's venvs have no setuptools at all."""
    from importlib.metadata import PackageNotFoundError, version
    from importlib.util import find_spec

    from packaging.version import Version

    try:
        setuptools = version("setuptools")
    except PackageNotFoundError:
        return "no setuptools in this environment"
    if Version(setuptools) < Version("70.1") and find_spec("wheel") is None:
        return f"setuptools {setuptools} builds wheels only with the wheel package, which is not installed"
    return None


def test_the_wheel_holds_only_highway(tmp_path):
    why_not = why_no_wheel_builds_here()
    if why_not:
        pytest.skip(f"cannot build a wheel offline here: {why_not}")
    src = tmp_path / "src"
    for name in [*PACKAGE_DIRS, "pyproject.toml", "README.md"]:
        copy = shutil.copytree if (ROOT / name).is_dir() else shutil.copy
        copy(ROOT / name, src / name, **({"ignore": shutil.ignore_patterns("__pycache__")}
                                         if (ROOT / name).is_dir() else {}))
    result = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                             "-w", str(tmp_path / "dist"), str(src)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    (wheel,) = (tmp_path / "dist").glob("*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    top = {n.split("/")[0] for n in names}
    assert {t for t in top if not t.endswith(".dist-info")} == {"highway"}
    for module in ("highway/kernels/highway_linear.py", "highway/bench/harness/sweep.py",
                   "highway/bench/study/convergence.py", "highway/bench/cli/__init__.py", "highway/reports/render.py"):
        assert module in names
    import highway

    assert f"-{highway.__version__}-" in wheel.name  # the version is written once, in highway/__init__.py
