#!/usr/bin/env bash
# Run the test suite (all but the notebooks and the browser, which need one interpreter's
# kernel and server) on every CPython >= 3.11 under pyenv other than python3.
set -euo pipefail
cd "$(dirname "$0")/.."
default=$(python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])')
root=$(pyenv root 2>/dev/null || true)
if [ -z "$root" ] || [ ! -d "$root/versions" ]; then
  echo "no pyenv here: only python3 ($default) was tested"
  exit 0
fi
for dir in "$root"/versions/3.*; do
  py="$dir/bin/python"
  [ -x "$py" ] || continue
  ver=$("$py" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
  "$py" -c 'import sys; sys.exit(sys.version_info < (3, 11))' || continue
  [ "$ver" = "$default" ] && continue
  venv=".ci-venvs/$ver"
  echo "-- Python $ver ($py)"
  [ -x "$venv/bin/python" ] || "$py" -m venv "$venv"
  "$venv/bin/python" -m pip install -q --disable-pip-version-check -c .ci/constraints.txt -e '.[dev]'
  "$venv/bin/python" -m pytest -q -p no:cacheprovider -m "not browser" tests
done
