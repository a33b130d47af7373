"""Layering and packaging: the core imports no modality or CLI code; every package folder ships."""

import re
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_core_imports_nothing_from_modalities_or_cli():
    pattern = re.compile(r"^\s*(from|import)\s+maskkit\.(modalities|cli)\b", re.M)
    offenders = [str(p.relative_to(ROOT)) for p in (ROOT / "maskkit").rglob("*.py")
                 if p.name != "__main__.py" and pattern.search(p.read_text())]
    assert offenders == []


def test_every_package_folder_is_listed_in_pyproject():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(config["packages"])
    mapping = {"maskkit": "maskkit", "modalities": "maskkit.modalities", "cli": "maskkit.cli"}
    found = set()
    for top, name in mapping.items():
        for init in (ROOT / top).rglob("__init__.py"):
            rel = init.parent.relative_to(ROOT / top)
            found.add(".".join([name, *rel.parts]) if rel.parts else name)
    assert found <= listed, f"add to pyproject packages: {sorted(found - listed)}"


def _import_graph(exclude_type_checking: bool):
    import grimp
    import networkx as nx

    sys.path.insert(0, str(ROOT / "scripts"))
    from lint_imports import allow_mapped_subpackages

    allow_mapped_subpackages()  # maskkit.cli / maskkit.modalities live in their own top-level folders

    graph = grimp.build_graph("maskkit", "maskkit.cli", "maskkit.modalities", include_external_packages=False,
                              exclude_type_checking_imports=exclude_type_checking)
    directed = nx.DiGraph()
    for module in graph.modules:
        directed.add_node(module)
        for imported in graph.find_modules_directly_imported_by(module):
            directed.add_edge(module, imported)
    return directed


def test_module_import_graph_has_no_cycle():
    """Function-level imports count too (grimp reads every import statement in a module)."""
    import networkx as nx

    for exclude in (True, False):
        cycles = [sorted(c) for c in nx.strongly_connected_components(_import_graph(exclude)) if len(c) > 1]
        assert cycles == [], f"import cycles (type-checking imports {'excluded' if exclude else 'included'}): {cycles}"


def test_import_linter_contracts_hold():
    """The executable form of docs/architecture.md's layer picture (also run by .ci/run)."""
    import subprocess

    out = subprocess.run([sys.executable, str(ROOT / "scripts" / "lint_imports.py"), "--no-cache"], cwd=ROOT,
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-2000:]
    assert "0 broken" in out.stdout


def test_every_builtin_masker_registers_through_entry_points():
    from importlib.metadata import entry_points

    from maskkit.registry import all_maskers, load_errors

    group = {ep.name: ep.value for ep in entry_points(group="maskkit.maskers")}
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["entry-points"]["maskkit.maskers"]
    assert set(config) <= set(group)
    loaded = all_maskers()
    assert not {k: v for k, v in load_errors().items() if k.startswith("masker:")}
    builtin = {name for name, cls in loaded.items() if cls.__module__.startswith("maskkit.")}
    assert builtin == set(config), "every maskkit masker is listed in [project.entry-points.\"maskkit.maskers\"]"
    for name in config:
        assert loaded[name].name == name


def test_registry_imports_no_masker():
    source = (ROOT / "maskkit" / "registry.py").read_text()
    assert not re.search(r"^\s*(from maskkit\.masking\.(?!base\b)|import maskkit\.masking)", source, re.M)
    assert "import_module" not in source


def test_no_file_cites_a_document_outside_the_repository():
    """Users have only the repository: the facts behind a default live in docs/, not in notes elsewhere."""
    import subprocess

    listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                            capture_output=True, text=True)
    if listed.returncode != 0:  # not a git checkout (an sdist): read the tree
        files = [p for p in ROOT.rglob("*") if p.is_file() and ".venv" not in p.parts]
    else:
        files = [ROOT / line for line in listed.stdout.splitlines()]
    shared = "shared"  # spelled apart so this test does not cite what it looks for
    pattern = re.compile(rf"(\.\./{shared}/|{shared}/research|{shared}/design\.md|\bresearch/[\w-]+\.md)")
    offenders = []
    for path in files:
        if path.suffix not in {".py", ".md", ".toml", ".txt", ".cfg", ".sh", ""} or not path.is_file() \
                or path == Path(__file__).resolve():
            continue
        text = path.read_text(errors="ignore")
        for match in pattern.finditer(text):
            offenders.append(f"{path.relative_to(ROOT)}: {match.group(0)}")
    assert offenders == []
