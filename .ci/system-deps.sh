#!/usr/bin/env bash
# Make sure the system programs the project needs are present:
#   venv support      (Debian's python3-venv) to create .venv; `system-deps.sh venv`
#                     checks only this (what `make demo` needs)
#   dot               (Debian's graphviz) renders pipeline graphs in the notebooks
#   /usr/bin/chromium (Debian's chromium) is the browser the JupyterLab test drives
# Present: do nothing, quietly. Missing and root: install them with apt-get.
# Missing and not root: say what to run, and fail.
set -euo pipefail

python=${PYTHON:-python3}
missing=()
"$python" -c 'import ensurepip, venv' >/dev/null 2>&1 || missing+=(python3-venv)
if [ "${1:-all}" != venv ]; then
    command -v dot >/dev/null 2>&1 || missing+=(graphviz)
    [ -x /usr/bin/chromium ] || missing+=(chromium)
fi

if [ "${#missing[@]}" -eq 0 ]; then
    exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
    echo "missing system packages ${missing[*]}: run: sudo apt-get install -y ${missing[*]}" >&2
    exit 1
fi

if ! command -v apt-get >/dev/null 2>&1; then
    echo "missing system packages ${missing[*]}, and no apt-get here: install them with this system's package manager" >&2
    exit 1
fi

echo "installing system packages: ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# fontconfig-config pulls fonts-dejavu-core; fonts-liberation2 is what chromium
# recommends (and --no-install-recommends would skip): without a font, text in
# screenshots and graph labels renders as boxes.
apt-get install -y -qq --no-install-recommends "${missing[@]}" fonts-dejavu-core fonts-liberation2

"$python" -c 'import ensurepip, venv' >/dev/null 2>&1 || { echo "$python still cannot create a venv" >&2; exit 1; }
if [ "${1:-all}" != venv ]; then
    command -v dot >/dev/null 2>&1 || { echo "dot is still missing after installing graphviz" >&2; exit 1; }
    [ -x /usr/bin/chromium ] || { echo "/usr/bin/chromium is still missing after installing chromium" >&2; exit 1; }
fi
