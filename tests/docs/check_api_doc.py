#!/usr/bin/env python3
"""Checks docs/api.md against server/openapi.json.

Every OpenAPI operation must have a heading in docs/api.md of the form

    ### `GET /api/jobs/{id}`

(`<id>` is accepted for `{id}`), every such heading must name an operation that
exists in the OpenAPI file, and every response status code the OpenAPI file lists
for an operation must appear in that operation's section (the text up to the next
heading of the same or a higher level) — all but 200, which every section implies.
Standard library only.

Exit status 0 when the document is complete, 1 otherwise (each problem on a line).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import sys

METHODS = ("get", "put", "post", "delete", "patch", "head", "options")
HEADING = re.compile(r"^(#{1,6})\s+(.*)$")
ENDPOINT = re.compile(r"^`(GET|PUT|POST|DELETE|PATCH|HEAD|OPTIONS)\s+(/[^`\s]*)`\s*$")


def normalise(path: str) -> str:
    """/api/jobs/<id> and /api/jobs/{id} are the same path; parameter names count."""
    return re.sub(r"<([^>/]+)>", r"{\1}", path)


def openapi_operations(spec: dict) -> dict:
    """{(METHOD, path): [status codes]} of every operation in the spec."""
    ops = {}
    for path, item in spec.get("paths", {}).items():
        for method, op in item.items():
            if method.lower() not in METHODS:
                continue
            codes = sorted(str(c) for c in op.get("responses", {}) if str(c).isdigit())
            ops[(method.upper(), normalise(path))] = codes
    return ops


def doc_sections(text: str) -> tuple[dict, list]:
    """{(METHOD, path): section text} for endpoint headings, and duplicate headings."""
    lines = text.splitlines()
    headings = []  # (line index, level, key or None)
    in_code = False
    for i, line in enumerate(lines):
        if line.lstrip().startswith("```"):
            in_code = not in_code
            continue
        if in_code:
            continue
        m = HEADING.match(line)
        if not m:
            continue
        e = ENDPOINT.match(m.group(2).strip())
        key = (e.group(1), normalise(e.group(2))) if e else None
        headings.append((i, len(m.group(1)), key))
    sections, duplicates = {}, []
    for n, (start, level, key) in enumerate(headings):
        if key is None:
            continue
        end = len(lines)
        for later_start, later_level, _ in headings[n + 1:]:
            if later_level <= level:
                end = later_start
                break
        if key in sections:
            duplicates.append(key)
        sections[key] = "\n".join(lines[start + 1:end])
    return sections, duplicates


def check(spec: dict, text: str) -> list:
    ops = openapi_operations(spec)
    sections, duplicates = doc_sections(text)
    problems = []
    for method, path in sorted(ops, key=lambda k: (k[1], k[0])):
        section = sections.get((method, path))
        if section is None:
            problems.append(f"missing: no '### `{method} {path}`' section for an OpenAPI operation")
            continue
        for code in ops[(method, path)]:
            if code == "200":
                continue
            if not re.search(rf"(?<![0-9]){code}(?![0-9])", section):
                problems.append(f"{method} {path}: status {code} (in the OpenAPI responses) is not mentioned")
    for method, path in sorted(sections):
        if (method, path) not in ops:
            problems.append(f"stale: '{method} {path}' is documented but not in the OpenAPI file")
    for method, path in duplicates:
        problems.append(f"duplicate: '{method} {path}' has more than one section")
    return problems


def main(argv=None) -> int:
    repo = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--openapi", default=os.path.join(repo, "server", "openapi.json"))
    p.add_argument("--doc", default=os.path.join(repo, "docs", "api.md"))
    args = p.parse_args(argv)
    with open(args.openapi, encoding="utf-8") as f:
        spec = json.load(f)
    with open(args.doc, encoding="utf-8") as f:
        text = f.read()
    ops = openapi_operations(spec)
    if not ops:
        print(f"{args.openapi}: no operations found", file=sys.stderr)
        return 1
    problems = check(spec, text)
    for line in problems:
        print(f"{args.doc}: {line}")
    if problems:
        print(f"{len(problems)} problem(s): update docs/api.md to match server/openapi.json")
        return 1
    print(f"docs/api.md documents all {len(ops)} OpenAPI operations and their status codes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
