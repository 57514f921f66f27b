#!/usr/bin/env bash
# Installs Data-Juicer (the peer every benchmark compares against) into its own virtualenv,
# bench/.work/dj-venv (git-ignored), and prints the path of its python. Idempotent.
# Data-Juicer 1.6.1 needs packages it does not declare (aiohttp, ray, ftfy, scipy, matplotlib).
set -euo pipefail
cd "$(dirname "$0")"
VENV=.work/dj-venv
if [ ! -x "$VENV/bin/dj-process" ]; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --disable-pip-version-check torch==2.13.0 >&2
  "$VENV/bin/pip" install -q --disable-pip-version-check py-data-juicer==1.6.1 aiohttp ray ftfy \
    scipy matplotlib >&2
fi
echo "$PWD/$VENV/bin/python"
