"""`python -m relay_tools.sizes PATH...`: fail when a function is longer than --max-lines (`make lint`).

Ruff's mccabe and pylint rules bound complexity, branches and statements; this bounds length, docstring
included, so that every runtime function reads on one screen.
"""

from __future__ import annotations

import argparse
import ast
import sys
from pathlib import Path


def long_functions(paths: list[Path], max_lines: int) -> list[str]:
    """`file:line name (N lines)` for every function or method longer than `max_lines`."""
    out = []
    for root in paths:
        for path in sorted(root.rglob("*.py")) if root.is_dir() else [root]:
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
                if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                    lines = (node.end_lineno or node.lineno) - node.lineno + 1
                    if lines > max_lines:
                        out.append(f"{path}:{node.lineno} {node.name} ({lines} lines > {max_lines})")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m relay_tools.sizes", description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="+", type=Path)
    parser.add_argument("--max-lines", type=int, default=60)
    args = parser.parse_args(argv)
    found = long_functions(args.paths, args.max_lines)
    for line in found:
        print(line, file=sys.stderr)
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
