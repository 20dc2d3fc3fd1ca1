"""
The benchmark and the loopback stack stand on their own: bench/ and
loopback/ import nothing from tests/, and loopback/ (like bench/) is in
neither the image's build context nor the installed package.
"""

import ast
import tomllib
from fnmatch import fnmatch

import pytest

from loopback.processes import PROJECT_ROOT


def imported_modules(package):
    for path in sorted((PROJECT_ROOT / package).rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                yield from ((path, alias.name) for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module:
                yield path, node.module


@pytest.mark.parametrize("package", ["bench", "loopback"])
def test_imports_nothing_from_the_tests(package):
    from_tests = [
        f"{path.relative_to(PROJECT_ROOT)}: {module}"
        for path, module in imported_modules(package)
        if module == "tests" or module.startswith("tests.")
    ]

    assert from_tests == []


def test_the_loopback_stack_is_not_shipped():
    ignored = (PROJECT_ROOT / ".dockerignore").read_text().split()
    pyproject = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())
    shipped = pyproject["tool"]["setuptools"]["packages"]["find"]["include"]

    assert "loopback" in ignored
    assert not any(fnmatch("loopback", pattern) for pattern in shipped)
