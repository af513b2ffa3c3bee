"""Inventory of dakera-py's public client methods, read from the installed package.

    python inventory.py            # method -> HTTP routes it calls, one per line
    python inventory.py --missing  # methods that docs/compatibility.md does not list

Used by test_docs_inventory.py to keep docs/compatibility.md complete.
"""

from __future__ import annotations

import ast
import inspect
import re
import sys
from pathlib import Path

import dakera
from dakera import AsyncDakeraClient, DakeraClient

DOC = Path(__file__).resolve().parents[2] / "docs" / "compatibility.md"


def public_methods(cls) -> list[str]:
    return sorted(n for n, _ in inspect.getmembers(cls, inspect.isfunction) if not n.startswith("_"))


def routes() -> dict[str, list[str]]:
    """method -> ["VERB /path", ...] as written in the sync client's source."""
    src = Path(inspect.getsourcefile(DakeraClient)).read_text()
    out: dict[str, list[str]] = {}
    for node in ast.walk(ast.parse(src)):
        if isinstance(node, ast.ClassDef) and node.name == "DakeraClient":
            for f in node.body:
                if not isinstance(f, ast.FunctionDef) or f.name.startswith("_"):
                    continue
                calls: list[str] = []
                for n in ast.walk(f):
                    if (isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute) and n.func.attr == "_request"
                            and len(n.args) >= 2):
                        verb = ast.unparse(n.args[0]).strip("'\"")
                        path = ast.unparse(n.args[1])
                        path = re.sub(r"^f?['\"]|['\"]$", "", path)
                        path = re.sub(r"\{_path_segment\((\w+)\)\}", r"{\1}", path)
                        calls.append(f"{verb} {path}")
                out[f.name] = list(dict.fromkeys(calls))
    return out


def documented_methods(doc: Path = DOC) -> dict[str, str]:
    """method -> status, from the tables of docs/compatibility.md (`| \\`name\\` | status | ...`)."""
    found: dict[str, str] = {}
    for line in doc.read_text().splitlines():
        m = re.match(r"^\|\s*`([a-z_][a-z0-9_]*)`\s*\|\s*([a-z ]+?)\s*\|", line)
        if m:
            found[m.group(1)] = m.group(2)
    return found


if __name__ == "__main__":
    print(f"dakera {dakera.__version__}" if hasattr(dakera, "__version__") else "dakera")
    sync = public_methods(DakeraClient)
    if "--missing" in sys.argv:
        doc = documented_methods()
        for name in sync + sorted(set(public_methods(AsyncDakeraClient)) - set(sync)):
            if name not in doc:
                print(name)
    else:
        r = routes()
        for name in sync:
            print(name, "|", "; ".join(r.get(name, [])) or "(client-side)")
        print("async-only:", sorted(set(public_methods(AsyncDakeraClient)) - set(sync)))
