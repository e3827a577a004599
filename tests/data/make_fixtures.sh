#!/usr/bin/env bash
# Regenerates the conformance fixtures in tests/data with the pinned zarr-python
# (requirements.txt). Run from anywhere; `cargo xtask fixtures` runs it.
# The venv lives under /tmp so nothing but the fixtures lands in the repository.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
venv="${ZARR_FIXTURES_VENV:-/tmp/damacy-zarr-fixtures-venv}"
python="${PYTHON:-python3}"

if [ ! -x "$venv/bin/python" ]; then
    "$python" -m venv "$venv"
fi
"$venv/bin/pip" install --quiet --disable-pip-version-check -r "$here/requirements.txt"

# Start from a clean slate so arrays dropped from the script do not linger.
rm -rf "$here/zarr" "$here/npy" "$here/manifest.json"
"$venv/bin/python" "$here/make_fixtures.py" "$here"
echo "fixtures written to $here ($(du -sh "$here" | cut -f1))"
