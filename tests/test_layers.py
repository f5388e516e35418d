"""Layers only call downwards: cli -> sweep -> reports -> training / adaptation / retrieval -> models / data
-> config (only cli and reports may import adaptation); analysis sits beside training, over
retrieval and data, and only cli and reports may import it.

Every module under ``sfrs/`` is parsed (not imported) and each of its imports, including
those inside functions, is checked against the rule of its layer.
"""
import ast
from pathlib import Path
from typing import Iterator, List, Optional, Tuple

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "sfrs"

#: layer -> layers it must not import. ``cli`` may import anything.
FORBIDDEN = {
    "cli": set(),
    # sweeps drive training runs and summarise them with the reports' statistics
    "sweep": {"cli", "adaptation", "analysis"},
    "reports": {"cli", "sweep"},
    "training": {"cli", "sweep", "reports", "adaptation", "analysis"},
    "adaptation": {"cli", "sweep", "reports", "training", "analysis"},
    # data set statistics and figures: data, and retrieval's thumbnails and map styles
    "analysis": {"cli", "sweep", "reports", "training", "adaptation"},
    "retrieval": {"cli", "sweep", "reports", "training", "adaptation", "analysis"},
    "models": {"cli", "sweep", "reports", "training", "retrieval", "adaptation", "analysis"},
    "data": {"cli", "sweep", "reports", "training", "retrieval", "adaptation", "analysis"},
}
#: the configuration sits below everything: it may import only these (and itself).
CONFIG_MAY_IMPORT = {"config", "errors", "utils"}


def module_name(path: Path) -> str:
    """``sfrs/retrieval/pca.py`` -> ``sfrs.retrieval.pca``; a package's ``__init__.py`` -> the package."""
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def layer_of(module: str) -> Optional[str]:
    """``sfrs.config`` (a module or a package) -> ``config``; ``sfrs`` itself has no layer."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == "sfrs" else None


def imported_modules(source: str, module: str, is_package: bool) -> Iterator[Tuple[int, str]]:
    """(line, absolute module name) of every import in ``source``, at any depth.

    ``from sfrs import distributed`` yields ``sfrs.distributed``: a name imported from a
    package may be a submodule, and for the layer check it is.
    """
    package = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target == "sfrs":
                for alias in node.names:
                    yield node.lineno, f"sfrs.{alias.name}"
            else:
                yield node.lineno, target


def violations(source: str, module: str, is_package: bool = False) -> List[str]:
    """One ``module:line imports target`` line per import the module's layer forbids."""
    layer = layer_of(module)
    found = []
    for line, target in sorted(imported_modules(source, module, is_package)):
        target_layer = layer_of(target)
        if target_layer is None or target_layer == layer:
            continue
        if layer == "config":
            allowed = target_layer in CONFIG_MAY_IMPORT
        else:
            allowed = target_layer not in FORBIDDEN.get(layer, set())
        if not allowed:
            found.append(f"{module}:{line} imports {target} ({layer} may not import {target_layer})")
    return found


def modules_of(layer: str) -> List[Path]:
    return sorted(
        path for path in PACKAGE.rglob("*.py") if layer_of(module_name(path)) == layer
    )


@pytest.mark.parametrize("layer", sorted(FORBIDDEN) + ["config"])
def test_layer__imports_only_what_its_rule_allows(layer):
    paths = modules_of(layer)
    assert paths, f"no module found for layer '{layer}' under {PACKAGE}"
    found = [
        line
        for path in paths
        for line in violations(path.read_text(encoding="utf-8"), module_name(path), path.name == "__init__.py")
    ]
    assert not found, "imports against the layer rule:\n" + "\n".join(found)


def test_layer_check__catches_lazy_relative_and_package_imports():
    source = (
        "from sfrs.errors import DataError\n"
        "from sfrs import distributed\n"
        "def f():\n"
        "    from sfrs.retrieval.index import search\n"
        "    from ..training import trainer\n"
        "    import sfrs.reports.transfer\n"
        "    from sfrs import cli\n"
    )
    found = violations(source, "sfrs.models.network")
    assert [line.split(" (")[0] for line in found] == [
        "sfrs.models.network:4 imports sfrs.retrieval.index",
        "sfrs.models.network:5 imports sfrs.training",
        "sfrs.models.network:6 imports sfrs.reports.transfer",
        "sfrs.models.network:7 imports sfrs.cli",
    ]
    assert violations("from sfrs.data import Split\n", "sfrs.config.schema") == [
        "sfrs.config.schema:1 imports sfrs.data (config may not import data)"
    ]
    assert violations("from .build import to_dict\nfrom sfrs.utils.io import atomic_path\n", "sfrs.config", True) == []
