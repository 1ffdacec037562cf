#!/usr/bin/env bash
# Try the newest releases that requirements.in / requirements-test.in allow, before moving the pins.
#
#   tools/update_pins.sh            install them in a throw-away venv, run the README's test
#                                   command on a clean copy of HEAD, show what would move
#   tools/update_pins.sh --write    same, and when the suite passes rewrite requirements.txt and
#                                   requirements-test.txt with the versions it passed with
#
# torch is left at the CPU build this machine installs (pip install torch==2.13.0); the pins never
# name torch or the packages only torch needs, so Spaces, Colab and CUDA machines keep their own.
set -euo pipefail
cd "$(dirname "$0")/.."
write=0
[ "${1:-}" = "--write" ] && write=1
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore
python3 -m venv "$work/venv"
py="$work/venv/bin/python"
"$py" -m pip install -q --upgrade pip
"$py" -m pip install -q torch==2.13.0
"$py" -m pip freeze | sed 's/[=@ ].*//' | tr 'A-Z_' 'a-z-' | sort -u > "$work/torch-closure"
# --upgrade would also move torch (to a multi-GB CUDA build): keep the one installed above
grep -v '^torch\b' requirements.in > "$work/requirements.in"
"$py" -m pip install -q --upgrade -r "$work/requirements.in"
"$py" -m pip freeze > "$work/runtime.freeze"
"$py" -m pip install -q --upgrade -r requirements-test.in
"$py" -m pip freeze > "$work/all.freeze"
python3 tools/pins.py "$work/torch-closure" "$work/runtime.freeze" "$work/all.freeze" "$work"

echo "== what would move (current pins → newest allowed)"
diff <(grep -hv '^#' requirements.txt requirements-test.txt | sort) \
     <(grep -hv '^#' "$work/requirements.txt" "$work/requirements-test.txt" | sort) || true

git clone -q . "$work/clone"
cp requirements*.in "$work/clone/" 2>/dev/null || true
[ -e ../shared ] && ln -s "$(cd ../shared && pwd)" "$work/shared"
test_command=$(sed -n 's/^<!-- test-command: \(.*\) -->$/\1/p' README.md)
echo "== running: $test_command (newest releases, clean copy of HEAD)"
if (cd "$work/clone" && PATH="$work/venv/bin:$PATH" eval "$test_command"); then
  echo "== the suite passed with the newest allowed releases"
  if [ $write = 1 ]; then
    cp "$work/requirements.txt" "$work/requirements-test.txt" .
    echo "== requirements.txt and requirements-test.txt rewritten: review the diff, run bash .ci/run, commit"
  fi
else
  echo "== the suite FAILED with the newest releases: keep the pins, fix the code first" >&2
  exit 1
fi
