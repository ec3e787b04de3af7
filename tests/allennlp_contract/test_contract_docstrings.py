"""The rule of this package: every contract test names, in its docstring, the reference source file it pins."""

from __future__ import annotations

import ast
from pathlib import Path


def test_every_contract_test_names_the_source_file_it_pins():
    unnamed = []
    for module in sorted(Path(__file__).parent.glob("test_*.py")):
        for node in ast.parse(module.read_text()).body:
            if (
                isinstance(node, ast.FunctionDef)
                and node.name.startswith("test_")
                and module.name != Path(__file__).name
            ):
                if ".py" not in (ast.get_docstring(node) or ""):
                    unnamed.append(f"{module.name}::{node.name}")
    assert unnamed == []
