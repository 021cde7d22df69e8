#!/usr/bin/env bash
# Regenerates the Python stubs from proto/ into OUT (default clients/python).
# `tools/genproto.sh --check` regenerates into a scratch directory and fails on
# any difference from the committed stubs.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
export PATH="$(dirname "$PY"):$PATH"

generate() {
  local out=$1
  mkdir -p "$out"
  # shellcheck disable=SC2046
  "$PY" -m grpc_tools.protoc -I proto \
    --python_out="$out" --grpc_python_out="$out" \
    --mypy_out="$out" --mypy_grpc_out="$out" \
    $(find proto -name '*.proto' | sort)
  # Generated packages are regular packages so every tool resolves them alike.
  find "$out" -name '*_pb2.py' -printf '%h\n' | sort -u | while read -r d; do
    touch "$d/__init__.py"
  done
}

if [[ "${1:-}" == "--check" ]]; then
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  generate "$tmp"
  status=0
  for f in $(cd "$tmp" && find . -type f | sort); do
    if ! cmp -s "$tmp/$f" "clients/python/$f"; then
      echo "proto drift: clients/python/${f#./} differs from what proto/ generates" >&2
      status=1
    fi
  done
  for f in $(cd clients/python && find . \( -name '*_pb2*.py' -o -name '*_pb2*.pyi' \) | sort); do
    [[ -e "$tmp/$f" ]] || { echo "proto drift: clients/python/${f#./} has no proto source" >&2; status=1; }
  done
  [[ $status -eq 0 ]] && echo "generated stubs match proto/"
  exit $status
fi
generate clients/python
