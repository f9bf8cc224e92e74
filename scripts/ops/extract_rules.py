"""Print the alerting rules of rendered PrometheusRule objects as a Prometheus rules file.

`promtool check rules` and a plain Prometheus read rule files, not the
operator's PrometheusRule objects; this takes `helm template` output (a file,
or - for stdin) and prints `{groups: [...]}` from every PrometheusRule in it.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import yaml


def rule_groups(manifests: str) -> list[dict[str, Any]]:
    groups: list[dict[str, Any]] = []
    for doc in yaml.safe_load_all(manifests):
        if isinstance(doc, dict) and doc.get("kind") == "PrometheusRule":
            groups.extend(doc["spec"]["groups"])
    return groups


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: extract_rules.py MANIFESTS.yaml|-", file=sys.stderr)
        return 2
    text = sys.stdin.read() if argv[0] == "-" else Path(argv[0]).read_text(encoding="utf-8")
    groups = rule_groups(text)
    if not groups:
        print(f"extract_rules: no PrometheusRule in {argv[0]}", file=sys.stderr)
        return 1
    yaml.safe_dump({"groups": groups}, sys.stdout, sort_keys=False, width=1000)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
