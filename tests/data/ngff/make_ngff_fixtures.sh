#!/usr/bin/env bash
# Regenerates the OME-NGFF image fixtures in tests/data/ngff with the pinned ome-zarr-py
# (requirements.txt beside this script). Run from anywhere; `cargo xtask fixtures` runs it.
# The venv lives under /tmp so nothing but the fixtures lands in the repository.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
venv="${NGFF_FIXTURES_VENV:-/tmp/damacy-ngff-fixtures-venv}"
python="${PYTHON:-python3}"

if [ ! -x "$venv/bin/python" ]; then
    "$python" -m venv "$venv"
fi
"$venv/bin/pip" install --quiet --disable-pip-version-check -r "$here/requirements.txt"

# Start from a clean slate so images dropped from the script do not linger.
rm -rf "$here/v04" "$here/v05" "$here/npy" "$here/manifest.json"
"$venv/bin/python" "$here/make_ngff_fixtures.py" "$here"
echo "fixtures written to $here ($(du -sh "$here" | cut -f1))"
