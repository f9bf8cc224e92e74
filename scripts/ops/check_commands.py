"""Check that the chart runs commands and settings this tollguard knows.

Helm and kubeconform see only Kubernetes fields: a renamed flag or setting
renders a valid Deployment whose pod then exits at start. This takes `helm
template` output and, for every tollguard container, parses its args with the
CLI's own parser and loads its TOLLGUARD_* environment with `load_settings`
(values from Secrets stand in as "secret"). Exit status 1 names each problem.
"""

from __future__ import annotations

import contextlib
import io
import sys
from dataclasses import fields
from pathlib import Path
from typing import Any

import yaml

from tollguard.cli.main import build_parser
from tollguard.config import Settings, load_settings
from tollguard.numbering.plan import RULES_DIR_ENV

# Read outside the settings fields.
OTHER_VARIABLES = {"TOLLGUARD_CONFIG", RULES_DIR_ENV}
WORKLOADS = {"Deployment", "StatefulSet"}


def containers(manifests: str) -> list[tuple[str, dict[str, Any]]]:
    found = []
    for doc in yaml.safe_load_all(manifests):
        if isinstance(doc, dict) and doc.get("kind") in WORKLOADS:
            name = f"{doc['kind']}/{doc['metadata']['name']}"
            for c in doc["spec"]["template"]["spec"]["containers"]:
                found.append((f"{name} container {c['name']}", c))
    return found


def problems(where: str, container: dict[str, Any]) -> list[str]:
    out = []
    args = container.get("args", ["worker"])  # the image's CMD
    stderr = io.StringIO()
    try:
        with contextlib.redirect_stderr(stderr):
            build_parser().parse_args([str(a) for a in args])
    except SystemExit:
        error = stderr.getvalue().strip().splitlines()[-1]  # after the usage lines
        out.append(f"{where}: tollguard {' '.join(map(str, args))}: {error}")
    known = {f"TOLLGUARD_{f.name.upper()}" for f in fields(Settings)} | OTHER_VARIABLES
    env = {}
    for var in container.get("env", []):
        name = var["name"]
        if not name.startswith("TOLLGUARD_"):
            continue
        if name not in known:
            out.append(f"{where}: {name} is not a tollguard setting")
        env[name] = str(var["value"]) if "value" in var else "secret"
    try:
        load_settings(env=env)
    except SystemExit as exc:
        out.append(f"{where}: {exc}")
    return out


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: check_commands.py MANIFESTS.yaml", file=sys.stderr)
        return 2
    found = containers(Path(argv[0]).read_text(encoding="utf-8"))
    errors = [p for where, c in found for p in problems(where, c)]
    for e in errors:
        print(f"check_commands: {e}", file=sys.stderr)
    if not found:
        print("check_commands: no workload in the manifests", file=sys.stderr)
        return 1
    print(f"check_commands: {len(found)} containers, args and settings known to tollguard")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
