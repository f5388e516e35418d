"""The public face of sfrs.data: every exported name resolves, importing it is cheap, and the
data layer depends on no layer above it."""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import sfrs.data

DATA_PACKAGE = Path(sfrs.data.__file__).parent
LAYERS_ABOVE = ("sfrs.retrieval", "sfrs.training", "sfrs.models", "sfrs.reports", "sfrs.adaptation", "sfrs.cli")


def test_sfrs_data__every_exported_name_resolves():
    missing = [name for name in sfrs.data.__all__ if getattr(sfrs.data, name, None) is None]
    assert missing == []


def test_import_sfrs_data__loads_neither_torch_nor_the_city_generator():
    code = (
        "import sys, sfrs.data; "
        "print(','.join(m for m in ('torch', 'sfrs.data.synthetic') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == ""


def test_sfrs_data__imports_no_layer_above_it():
    offending = []
    for module in sorted(DATA_PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(module.read_text(), filename=str(module))):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            offending += [f"{module.relative_to(DATA_PACKAGE)}: {n}" for n in names if n.startswith(LAYERS_ABOVE)]
    assert offending == []
