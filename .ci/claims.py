"""Measure the book's asserted claims across seeds and thread counts.

Every hidden ``assert`` in a notebook states a claim of the prose. This script executes notebooks
(in an empty cache, under ``AIGC_SEED_OFFSET`` and a thread count), and after each hidden cell it
records both sides of every comparison in that cell's top-level asserts, whether or not the assert
held. ``table`` then prints, for each comparison, the min and max of each side over the runs and in
how many runs it held: the spread that an assert's margin must cover.

    python .ci/claims.py run --offset 1 --threads 2 --out _build/claims/o1.json notebooks/gan.ipynb
    python .ci/claims.py table _build/claims/*.json
"""
from __future__ import annotations

import argparse
import ast
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

RECORD = '''
def __aigc_record(cell, pairs):
    import math
    def num(v):
        try:
            f = float(v)
            return f if math.isfinite(f) else str(f)
        except Exception:
            return repr(v)[:80]
    for text, left, op, right in pairs:
        try:
            a, b = eval(left), eval(right)
            ok = eval(f"__a {op} __b", {"__a": a, "__b": b})
            __aigc_claims.append({"cell": cell, "claim": text, "left": num(a), "op": op,
                                  "right": num(b), "held": bool(ok)})
        except Exception as exc:
            __aigc_claims.append({"cell": cell, "claim": text, "error": repr(exc)[:120]})
__aigc_claims = []
'''
OPS = {ast.Lt: "<", ast.LtE: "<=", ast.Gt: ">", ast.GtE: ">=", ast.Eq: "==", ast.NotEq: "!="}


def comparisons(code: str) -> list[tuple[str, str, str, str]]:
    """(text, left, op, right) for each comparison in the cell's top-level ``assert`` statements."""
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return []
    pairs = []
    for stmt in tree.body:
        if not isinstance(stmt, ast.Assert):
            continue
        tests = stmt.test.values if isinstance(stmt.test, ast.BoolOp) else [stmt.test]
        for test in tests:
            if not isinstance(test, ast.Compare):
                pairs.append((ast.unparse(test), f"bool({ast.unparse(test)})", "==", "True"))
                continue
            operands = [test.left, *test.comparators]
            for left, op, right in zip(operands, test.ops, operands[1:]):
                if type(op) in OPS:
                    text = f"{ast.unparse(left)} {OPS[type(op)]} {ast.unparse(right)}"
                    pairs.append((text, ast.unparse(left), OPS[type(op)], ast.unparse(right)))
    return pairs


def instrument(nb) -> None:
    cells = [nbformat.v4.new_code_cell(RECORD)]
    for i, cell in enumerate(nb.cells):
        cells.append(cell)
        tags = cell.get("metadata", {}).get("tags", [])
        if cell.cell_type == "code" and "remove-cell" in tags and "assert" in cell.source:
            pairs = comparisons(cell.source)
            if pairs:
                cells.append(nbformat.v4.new_code_cell(f"__aigc_record({i}, {pairs!r})"))
    cells.append(nbformat.v4.new_code_cell("import json; print('__CLAIMS__' + json.dumps(__aigc_claims))"))
    nb.cells = cells


def run(args) -> None:
    env = {"AIGC_SEED_OFFSET": str(args.offset), "OMP_NUM_THREADS": str(args.threads),
           "AIGC_PROFILE": os.environ.get("AIGC_PROFILE", "quick"),
           "AIGC_CACHE": args.cache or tempfile.mkdtemp(prefix=f"aigc-claims-o{args.offset}-t{args.threads}-")}
    os.environ.update(env)
    out = Path(args.out)
    results = json.loads(out.read_text()) if out.exists() else {}
    for path in args.notebooks:
        name = Path(path).stem
        nb = nbformat.read(path, as_version=4)
        instrument(nb)
        start = time.perf_counter()
        client = NotebookClient(nb, timeout=1800, kernel_name="python3", allow_errors=True,
                                resources={"metadata": {"path": str(Path(path).parent)}})
        claims, errors = [], []
        try:
            client.execute()
        except Exception as exc:  # noqa: BLE001 - a dead kernel must not stop the other notebooks
            errors.append(f"{type(exc).__name__}: {exc}"[:300])
        for cell in nb.cells:
            for o in cell.get("outputs", []):
                if o.get("output_type") == "stream" and "__CLAIMS__" in o.get("text", ""):
                    claims = json.loads(o["text"].split("__CLAIMS__", 1)[1])
                if o.get("output_type") == "error":
                    errors.append(f"{o['ename']}: {o['evalue'][:200]}")
        results[name] = {"env": env, "seconds": round(time.perf_counter() - start, 1),
                         "claims": claims, "errors": errors}
        print(f"{name}: {time.perf_counter() - start:.0f} s, {len(claims)} comparisons, "
              f"{sum(not c.get('held', False) for c in claims)} not holding, {len(errors)} errors", flush=True)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(results, indent=1))


def table(args) -> None:
    rows: dict[tuple[str, int, str], list] = {}
    for f in args.files:
        for name, res in json.loads(Path(f).read_text()).items():
            for c in res["claims"]:
                rows.setdefault((name, c["cell"], c["claim"]), []).append(c)

    def spread(cs, side):
        values = [c[side] for c in cs if isinstance(c.get(side), float)]
        if not values:
            return "-"
        lo, hi = min(values), max(values)
        return f"{lo:.4g}" if lo == hi else f"{lo:.4g} .. {hi:.4g}"

    print("| notebook | cell | claim | left side (min .. max) | right side (min .. max) | held |")
    print("|---|---|---|---|---|---|")
    for (name, cell, claim), cs in rows.items():
        held = sum(c.get("held", False) for c in cs)
        flag = "" if held == len(cs) else " **FAILS**"
        print(f"| {name} | {cell} | `{claim.replace('|', '/')[:80]}` | {spread(cs, 'left')} | "
              f"{spread(cs, 'right')} | {held}/{len(cs)}{flag} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run")
    r.add_argument("notebooks", nargs="+")
    r.add_argument("--offset", type=int, default=0)
    r.add_argument("--threads", type=int, default=2)
    r.add_argument("--cache", default=None, help="model cache (default: a new empty folder)")
    r.add_argument("--out", required=True)
    t = sub.add_parser("table")
    t.add_argument("files", nargs="+")
    args = parser.parse_args()
    run(args) if args.command == "run" else table(args)


if __name__ == "__main__":
    sys.exit(main())
