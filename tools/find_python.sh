#!/usr/bin/env sh
# Prints the newest Python (3.13, 3.12, then 3.11) on this machine that actually runs.
# pyenv shims for versions that are installed but not selected exist on PATH yet answer
# "command not found", so each candidate is executed, not just looked up.
set -u
if [ -n "${PYTHON:-}" ]; then echo "$PYTHON"; exit 0; fi
pyenv_root=$( (pyenv root) 2>/dev/null || echo "$HOME/.pyenv")
for v in 3.13 3.12 3.11; do
  for candidate in "python$v" "$pyenv_root"/versions/"$v"*/bin/"python$v" "/usr/bin/python$v" "/usr/local/bin/python$v"; do
    if "$candidate" -c 'import sys, venv; assert sys.version_info >= (3, 11)' >/dev/null 2>&1; then
      command -v "$candidate" 2>/dev/null || echo "$candidate"
      exit 0
    fi
  done
done
echo "no Python 3.11+ found; set PYTHON=/path/to/python3.x" >&2
exit 1
