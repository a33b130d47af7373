"""Run import-linter (``lint-imports``) on maskkit's folder layout.

The modalities and the command line live in the top-level folders ``modalities/`` and ``cli/`` and
install as ``maskkit.modalities`` and ``maskkit.cli`` (setuptools ``package-dir``). grimp, the graph
builder under import-linter, takes such a mapped subpackage as a root package only while its parent
is a namespace package; the front door ``maskkit/__init__.py`` makes ``maskkit`` a regular package,
so grimp refuses ``maskkit.cli`` (``NotATopLevelModule``). The three folders are disjoint, so no
module is read twice: this script lifts that one check and runs import-linter unchanged.

    python scripts/lint_imports.py --no-cache      # what .ci/run runs
"""

from __future__ import annotations

import sys


def allow_mapped_subpackages() -> None:
    """Let grimp take ``maskkit.cli`` and ``maskkit.modalities`` (mapped folders) as root packages."""
    from grimp.adaptors import packagefinder

    finder = packagefinder.ImportLibPackageFinder
    if not hasattr(finder, "_has_a_non_namespace_parent"):
        raise SystemExit("scripts/lint_imports.py: this grimp version has no _has_a_non_namespace_parent; "
                         "check the import-linter pin in pyproject.toml")
    finder._has_a_non_namespace_parent = lambda self, spec: False  # type: ignore[method-assign]


def main() -> int:
    allow_mapped_subpackages()
    from importlinter.cli import lint_imports_command

    return lint_imports_command()


if __name__ == "__main__":
    sys.exit(main())
