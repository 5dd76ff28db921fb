#!/usr/bin/env python3
"""ONNX conformance report: runs itkit_onnx_test_runner over Debian's ONNX backend
test data (libonnx-testdata) and writes docs/CONFORMANCE.md, grouped per op.

    .venv/bin/python tests/conformance/run_conformance.py [--runner PATH] [--out FILE]

Needs the venv python (Debian's onnx module) to read each case's op types. Exit
status: 0, or 1 when any case FAILs (the report is written either way).
"""
import argparse
import collections
import os
import re
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DATA = "/usr/lib/python3/dist-packages/onnx/backend/test/data"
SUITES = ["node", "pytorch-converted", "pytorch-operator", "simple"]
LINE = re.compile(r"^(PASS|FAIL|UNSUPPORTED|SKIP) (\S+)(?: max_abs=(\S+) max_rel=(\S+))?(?: (.*))?$")
# Ops that only move data around; a multi-op case is filed under its first other op.
PLUMBING = {"Constant", "Identity", "Reshape", "Shape", "Gather", "Unsqueeze", "Squeeze", "Concat",
            "Cast", "Transpose", "Flatten", "Slice", "ConstantOfShape", "Expand"}


def default_runner():
    for build in ("build", "build-onnx"):
        path = os.path.join(REPO, build, "importers", "onnx", "itkit_onnx_test_runner")
        if os.path.exists(path):
            return path
    return None


def model_ops(case_dir):
    """Op types of the case's model, in node order (domain-qualified outside ai.onnx)."""
    import onnx  # Debian's python3-onnx, visible in the venv

    model = onnx.load(os.path.join(case_dir, "model.onnx"), load_external_data=False)
    ops = []
    for node in model.graph.node:
        ops.append(node.op_type if node.domain in ("", "ai.onnx") else f"{node.domain}.{node.op_type}")
    return ops


def all_onnx_ops():
    import onnx.defs

    return {s.name for s in onnx.defs.get_all_schemas_with_history() if s.domain in ("", "ai.onnx")}


def primary_op(case, ops, known_ops):
    """The op a case tests: named by the case (test_reduce_sum_… → ReduceSum) when the
    model uses it; for *_expanded cases the op they expand; else its first real op."""
    norm = case[len("test_"):].replace("_", "").lower()
    used = [o for o in ops if o != "Constant"] or ops
    named = [o for o in set(used) if norm.startswith(o.lower())]
    if named:
        return max(named, key=len)
    if case.endswith("_expanded"):
        expanded = [o for o in known_ops if norm.startswith(o.lower())]
        if expanded:
            return max(expanded, key=len) + " (expanded)"
    real = [o for o in used if o not in PLUMBING]
    return (real or used or ["(no nodes)"])[0]


def shorten(message, limit=160):
    message = re.sub(r"\S*/model\.onnx: ", "", message or "")
    return message if len(message) <= limit else message[: limit - 1] + "…"


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runner", default=default_runner(), help="itkit_onnx_test_runner binary")
    parser.add_argument("--data", default=DATA, help="onnx/backend/test/data folder")
    parser.add_argument("--out", default=os.path.join(REPO, "docs", "CONFORMANCE.md"))
    parser.add_argument("--threads", default="2")
    args = parser.parse_args()
    if not args.runner or not os.path.exists(args.runner):
        sys.exit("run_conformance: build itkit_onnx_test_runner first (or pass --runner)")
    suites = [s for s in SUITES if os.path.isdir(os.path.join(args.data, s))]
    if not suites:
        sys.exit(f"run_conformance: no test data under {args.data} (apt install libonnx-testdata)")

    table_ops = set()
    for line in subprocess.run([args.runner, "--list-ops"], capture_output=True, text=True, check=True).stdout.split():
        table_ops.add(line)
    known_ops = all_onnx_ops()

    results = []  # (suite, case, outcome, max_abs, max_rel, message, primary, ops)
    for suite in suites:
        suite_dir = os.path.join(args.data, suite)
        proc = subprocess.run([args.runner, "--threads", args.threads, suite_dir], capture_output=True, text=True)
        if proc.returncode not in (0, 1):
            sys.exit(f"run_conformance: runner failed on {suite_dir}:\n{proc.stderr}")
        for line in proc.stdout.splitlines():
            m = LINE.match(line)
            if not m:
                continue
            outcome, case, max_abs, max_rel, message = m.groups()
            try:
                ops = model_ops(os.path.join(suite_dir, case))
            except Exception as e:  # noqa: BLE001 - a model onnx cannot read is still reported
                ops = []
                message = (message or "") + f" (onnx cannot load the model: {e})"
            results.append((suite, case, outcome, max_abs, max_rel, message,
                            primary_op(case, ops, known_ops), sorted(set(ops))))

    per_op = collections.defaultdict(lambda: collections.Counter())
    fails = collections.defaultdict(list)
    unsupported_reasons = collections.defaultdict(collections.Counter)
    totals = collections.defaultdict(collections.Counter)
    for suite, case, outcome, max_abs, max_rel, message, op, ops in results:
        per_op[op][outcome] += 1
        totals[suite][outcome] += 1
        if outcome == "FAIL":
            fails[op].append((suite, case, max_abs, max_rel, message))
        elif outcome == "UNSUPPORTED":
            reason = re.sub(r"^(import|session|run): Unsupported: ", "", shorten(message, 400))
            reason = re.sub(r"the model uses \d+ unsupported operators?: ", "unsupported op ", reason)
            reason = re.sub(r" \(supported: [^)]*\)", "", reason)
            reason = shorten(reason, 110)
            reason = re.sub(r"node '[^']*'", "node", reason)
            reason = re.sub(r"graph (input|output) '[^']*'", r"graph \1", reason)
            reason = re.sub(r", \d+ nodes?(, first)?: ('[^']*'|#\d+)", "", reason)
            unsupported_reasons[op][reason] += 1

    import onnx

    out = []
    out.append("# ONNX conformance\n")
    out.append("Generated by `tests/conformance/run_conformance.py` (do not edit by hand): "
               "`itkit_onnx_test_runner` over the ONNX backend test cases of Debian's libonnx-testdata "
               f"(onnx {onnx.__version__}), compared like `numpy.allclose` with rtol=1e-3, atol=1e-7 "
               "(integer and bool outputs exactly).\n")
    out.append("**UNSUPPORTED** means the importer or planner answered `kUnsupported` (an op not in the op "
               "table, a data type such as DOUBLE or INT8, an opset outside 6–17, a value that must be "
               "known at planning time but is a graph input); **FAIL** is anything else — a wrong "
               "result, shape or error. The `conformance` CTest tests fail on any FAIL.\n")
    out.append("| suite | cases | pass | fail | unsupported |\n|---|---:|---:|---:|---:|")
    for suite in suites:
        t = totals[suite]
        out.append(f"| {suite} | {sum(t.values())} | {t['PASS']} | {t['FAIL']} | {t['UNSUPPORTED'] + t['SKIP']} |")
    grand = sum((totals[s] for s in suites), collections.Counter())
    out.append(f"| **all** | {sum(grand.values())} | {grand['PASS']} | {grand['FAIL']} | "
               f"{grand['UNSUPPORTED'] + grand['SKIP']} |\n")

    out.append("## Per op\n")
    out.append("A case is filed under the op it tests (see `primary_op` in the script). *In table*: the op is "
               "in the runtime's op table (`itkit_onnx_test_runner --list-ops`).\n")
    out.append("| op | in table | pass | fail | unsupported | why unsupported (cases) |\n|---|:-:|---:|---:|---:|---|")
    for op in sorted(per_op, key=lambda o: (o.lower())):
        c = per_op[op]
        base = op.replace(" (expanded)", "")
        in_table = "yes" if base in table_ops else ("n/a" if op != base else "")
        reasons = "; ".join(f"{r} ({n})" for r, n in unsupported_reasons[op].most_common(3))
        reasons = reasons.replace("|", "\\|")
        out.append(f"| {op} | {in_table} | {c['PASS']} | {c['FAIL']} | {c['UNSUPPORTED'] + c['SKIP']} | {reasons} |")

    out.append("\n## Failures\n")
    if not fails:
        out.append("None.\n")
    for op in sorted(fails):
        out.append(f"### {op}\n")
        for suite, case, max_abs, max_rel, message in fails[op]:
            err = f" max_abs={max_abs} max_rel={max_rel}" if max_abs else ""
            out.append(f"- `{suite}/{case}`{err}: {shorten(message, 300)}")
        out.append("")

    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        f.write("\n".join(out).rstrip() + "\n")
    print(f"wrote {args.out}: {grand['PASS']} passed, {grand['FAIL']} failed, "
          f"{grand['UNSUPPORTED'] + grand['SKIP']} unsupported")
    return 1 if grand["FAIL"] else 0


if __name__ == "__main__":
    sys.exit(main())
