"""Layering and packaging: the core imports no modality or CLI code; every package folder ships."""

import re
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
