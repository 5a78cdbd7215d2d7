"""Every distribution the code imports is declared by its own name in setup.cfg: the plugin's in
``install_requires`` (Galaxy's own packages aside: the plugin runs inside a Galaxy), the test
servers' and the tests' in the ``[test]`` extra too. An import that works only because another
package happens to bring its distribution (python-keystoneclient came with cloudbridge's extras)
breaks on a clean install."""

import ast
import configparser
import importlib.metadata
import os
import re
import sys

import pytest

REPOSITORY = os.path.join(os.path.dirname(__file__), "..", "..")
# Run by the Swift virtualenv, not by this one (swift_aio.REQUIREMENTS declares what they import).
OTHER_VENV = {
    os.path.join("galaxy_cloud_storage_testing", "keystone"),
    os.path.join("galaxy_cloud_storage_testing", "swift"),
}


def requirement_names(text: str) -> set[str]:
    names = set()
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            names.add(canonical(re.split(r"[\s<>=!~;\[]", line, maxsplit=1)[0]))
    return names


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def declared() -> dict[str, set[str]]:
    setup = configparser.ConfigParser()
    setup.read(os.path.join(REPOSITORY, "setup.cfg"))
    extras = setup["options.extras_require"]
    return {
        "install_requires": requirement_names(setup["options"]["install_requires"]),
        "galaxy": requirement_names(extras["galaxy"]),
        "test": requirement_names(extras["test"]),
    }


def imported_modules(*directories: str) -> dict[str, str]:
    """Top-level module name -> a file importing it, for every absolute import below ``directories``."""
    found = {}
    for directory in directories:
        for parent, subdirectories, files in os.walk(os.path.join(REPOSITORY, directory)):
            subdirectories[:] = [d for d in subdirectories if d != "__pycache__"]
            if any(parent.endswith(other) for other in OTHER_VENV):
                continue
            for name in files:
                if not name.endswith(".py"):
                    continue
                path = os.path.join(parent, name)
                with open(path) as fh:
                    tree = ast.parse(fh.read(), path)
                for node in ast.walk(tree):
                    if isinstance(node, ast.Import):
                        modules = [alias.name for alias in node.names]
                    elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                        modules = [node.module]
                    else:
                        continue
                    for module in modules:
                        found.setdefault(module.split(".")[0], os.path.relpath(path, REPOSITORY))
    return found


def undeclared(modules: dict[str, str], allowed: set[str], own: set[str]) -> list[str]:
    distributions = importlib.metadata.packages_distributions()
    problems = []
    for module, where in sorted(modules.items()):
        if module in sys.stdlib_module_names or module in own:
            continue
        providers = {canonical(d) for d in distributions.get(module, [])}
        galaxys = {d for d in providers if d.startswith("galaxy-")}
        if not providers & allowed and not galaxys:
            problems.append(f"{module} (imported by {where}; distributions: {sorted(providers) or 'none'})")
    return problems


def test_the_plugin_imports_only_what_install_requires_declares():
    modules = imported_modules(os.path.join("lib", "galaxy_cloud_storage"))
    assert undeclared(modules, declared()["install_requires"], {"galaxy_cloud_storage"}) == []


@pytest.mark.parametrize("directory", [os.path.join("lib", "galaxy_cloud_storage_testing"), "test", "bench"])
def test_the_test_servers_tests_and_bench_import_only_what_the_test_extra_declares(directory):
    names = declared()
    allowed = names["install_requires"] | names["galaxy"] | names["test"]
    # the tests' and the bench's own modules, imported by bare name from their own directory
    own = {"galaxy_cloud_storage", "galaxy_cloud_storage_testing"}
    for _, _, files in os.walk(os.path.join(REPOSITORY, directory)):
        own |= {name[: -len(".py")] for name in files if name.endswith(".py")}
    assert undeclared(imported_modules(directory), allowed, own) == []
