#!/bin/sh
# Build Squall's image (deploy/docker/Dockerfile) without any registry:
#   deploy/docker/build.sh [TAG]      (default squall/squall:dev; run from anywhere)
# The base comes from debootstrap (python -m squall.sandbox.images --platform-base,
# cached); Squall and its dependencies are installed from PyPI as CPython 3.11 manylinux
# wheels, at the versions of constraints.txt, into the build context (Debian bookworm's
# python3 is 3.11); the Node.js 20 build and the library sets come from the runtimes
# cache (./dev installs them). Needs the project's .venv (./dev sets it up), docker and a
# dockerd.
set -eu
tag=${1:-squall/squall:dev}
repo=$(cd "$(dirname "$0")/../.." && pwd)
py="$repo/.venv/bin/python"
cache=${SQUALL_RUNTIMES_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/squall/runtimes}
base=$("$py" -m squall.sandbox.images --platform-base)
ctx=$(mktemp -d)
trap 'rm -rf "$ctx"' EXIT
"$py" -m pip wheel --quiet --no-deps -w "$ctx/wheels" "$repo" >/dev/null
"$py" -m pip install --quiet --target "$ctx/site" --platform manylinux2014_x86_64 \
  --python-version 3.11 --implementation cp --only-binary=:all: -c "$repo/constraints.txt" \
  "$ctx"/wheels/squall-*.whl >/dev/null
rm -rf "$ctx/site/bin" "$ctx/wheels"
mkdir -p "$ctx/runtimes"
for part in node-20 nodejs-libraries python3.11-libraries; do
  [ -d "$cache/$part" ] || { echo "build.sh: $cache/$part is missing: run ./dev (squall runtimes install)" >&2; exit 1; }
  cp -a "$cache/$part" "$ctx/runtimes/"
done
cp -a "$repo/deploy/nginx" "$ctx/nginx"
cp -a "$repo/deploy/docker/bin" "$ctx/bin"
docker build --quiet --build-arg "BASE=$base" -t "$tag" -f "$repo/deploy/docker/Dockerfile" "$ctx" >/dev/null
echo "$tag"
