#!/usr/bin/env bash
# Installs valgrind (Debian package `valgrind`), which `python -m
# bench.instructions` runs the decision path under to count instructions per
# event. Idempotent: does nothing when it is present. Needs root (apt-get).
set -euo pipefail

if command -v valgrind >/dev/null 2>&1; then
    echo "install_bench_tools: valgrind already installed"
    exit 0
fi
if [[ $(id -u) -ne 0 ]]; then
    echo "install_bench_tools: need root to install valgrind (or install it yourself)" >&2
    exit 1
fi
echo "install_bench_tools: installing valgrind from Debian"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends valgrind
echo "install_bench_tools: done ($(valgrind --version))"
