#!/usr/bin/env bash
# Installs the Debian software the test suite runs besides Python and Kafka:
# Kamailio and sipp for the closed-loop test (issue 6; Kamailio's main package
# has siptrace, htable, jsonrpcs, xhttp; sipp is Debian package `sip-tester`),
# and valgrind, which `python -m bench.instructions` counts instructions under.
# Idempotent: does nothing when all are present. Needs root (apt-get); prints
# what it does.
set -euo pipefail

need=()
command -v kamailio >/dev/null 2>&1 || need+=(kamailio)
# evapi and friends; not strictly needed by deploy/kamailio, kept for parity
# with production images that enable them.
dpkg -s kamailio-extra-modules >/dev/null 2>&1 || need+=(kamailio-extra-modules)
command -v sipp >/dev/null 2>&1 || need+=(sip-tester)
command -v valgrind >/dev/null 2>&1 || need+=(valgrind)

if ((${#need[@]} == 0)); then
    echo "install_test_tools: kamailio, sipp and valgrind already installed"
    exit 0
fi
if [[ $(id -u) -ne 0 ]]; then
    echo "install_test_tools: need root to install ${need[*]} (or install them yourself)" >&2
    exit 1
fi
echo "install_test_tools: installing ${need[*]} from Debian"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# Do not start Kamailio's system service: the tests run their own on loopback.
if [[ ! -e /usr/sbin/policy-rc.d ]]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
    chmod +x /usr/sbin/policy-rc.d
    trap 'rm -f /usr/sbin/policy-rc.d' EXIT
fi
apt-get install -y -qq --no-install-recommends "${need[@]}"
command -v kamailio >/dev/null && command -v sipp >/dev/null && command -v valgrind >/dev/null
echo "install_test_tools: done ($(kamailio -v 2>/dev/null | head -1); sipp $(sipp -v 2>/dev/null | grep -o 'v[0-9.]*' | head -1); $(valgrind --version))"
