#!/usr/bin/env bash
# `make ops-check`: the container and deployment artefacts checked with the
# real tools. Tools come from scripts/install_ops_tools.sh; a missing tool is
# an error, never a skip.
set -euo pipefail
cd "$(dirname "$0")/../.."
BIN=.cache/bin
SCHEMAS=.cache/kubeconform-schemas
CHART=helm/tollguard
# Kubernetes version rendered for and validated against (schemas: install_ops_tools.sh).
K8S_VERSION=1.34.0
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT

for tool in "$BIN/helm" "$BIN/kubeconform" "$BIN/hadolint" "$(command -v promtool || echo promtool)"; do
    [[ -x "$tool" ]] || { echo "ops-check: $tool missing: run scripts/install_ops_tools.sh" >&2; exit 1; }
done
ls "$SCHEMAS"/.stamp-* >/dev/null 2>&1 || {
    echo "ops-check: kubeconform schemas missing: run scripts/install_ops_tools.sh" >&2; exit 1; }
step() { echo "ops-check: $*"; }

step "hadolint Dockerfile"
"$BIN/hadolint" Dockerfile

step "helm lint (default values, full-featured values)"
"$BIN/helm" lint --strict --kube-version "$K8S_VERSION" "$CHART"
"$BIN/helm" lint --strict --kube-version "$K8S_VERSION" "$CHART" -f "$CHART/ci/full-values.yaml"

step "values.schema.json rejects a misspelt key"
if "$BIN/helm" template t "$CHART" --kube-version "$K8S_VERSION" --set kafka.bootstrapServer=x >"$OUT/typo.txt" 2>&1; then
    echo "ops-check: a misspelt value (kafka.bootstrapServer) was accepted" >&2; exit 1
fi
grep -q "additional properties 'bootstrapServer' not allowed" "$OUT/typo.txt" || {
    echo "ops-check: unexpected error for a misspelt value:" >&2; cat "$OUT/typo.txt" >&2; exit 1; }

kubeconform() {
    "$BIN/kubeconform" -strict -summary -kubernetes-version "$K8S_VERSION" \
        -schema-location "$SCHEMAS/k8s/{{ .NormalizedKubernetesVersion }}-standalone{{ .StrictSuffix }}/{{ .ResourceKind }}{{ .KindSuffix }}.json" \
        -schema-location "$SCHEMAS/crd/{{ .Group }}/{{ .ResourceKind }}_{{ .ResourceAPIVersion }}.json" \
        "$@"
}
for values in default full; do
    args=()
    [[ $values == full ]] && args=(-f "$CHART/ci/full-values.yaml")
    step "helm template ($values values) | kubeconform -strict"
    "$BIN/helm" template tollguard "$CHART" --kube-version "$K8S_VERSION" --namespace fraud "${args[@]}" >"$OUT/$values.yaml"
    kubeconform "$OUT/$values.yaml"
    step "tollguard parses the rendered commands and settings ($values values)"
    .venv/bin/python scripts/ops/check_commands.py "$OUT/$values.yaml"
    step "promtool check rules ($values values)"
    .cache/ops-venv/bin/python scripts/ops/extract_rules.py "$OUT/$values.yaml" >"$OUT/$values-rules.yaml"
    promtool check rules "$OUT/$values-rules.yaml"
done

step "promtool test rules (alert logic on synthetic series, default values)"
mkdir "$OUT/unit"
cp "$OUT/default-rules.yaml" "$OUT/unit/rules.yaml"
cp "$CHART/ci/alerts_test.yaml" "$OUT/unit/"
(cd "$OUT/unit" && promtool test rules alerts_test.yaml)
step "kubeconform rejects unknown fields (schemas are strict, not skipped)"
sed -e 's/^  serviceName: \(.*\)$/  serviceName: \1\n  bogusField: 1/' \
    -e 's/^      scrapeTimeout: /      scrapeTimout: /' "$OUT/default.yaml" >"$OUT/bogus.yaml"
if kubeconform "$OUT/bogus.yaml" >"$OUT/bogus.txt" 2>&1 \
    || ! grep -q "'bogusField' not allowed" "$OUT/bogus.txt" \
    || ! grep -q "'scrapeTimout' not allowed" "$OUT/bogus.txt"; then
    echo "ops-check: kubeconform accepted unknown fields:" >&2; cat "$OUT/bogus.txt" >&2; exit 1
fi
step "all passed"
