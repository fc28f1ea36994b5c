#!/bin/sh
# Build Squall's image (deploy/docker/Dockerfile) without any registry:
#   deploy/docker/build.sh [TAG]      (default squall/squall:dev; run from anywhere)
# The base comes from debootstrap (python -m squall.sandbox.images --platform-base,
# cached); Squall and its dependencies are installed from PyPI as CPython 3.11 manylinux
# wheels, at the versions of constraints.txt, into the build context (Debian bookworm's
# python3 is 3.11, which runs Squall and the python:3.11 kind); the Node.js 20 build, the
# library sets and the CPython 3.13 of python:3.13 (the default Python kind: Debian 13's,
# relocated again with patchelf for /opt/squall/runtimes) come from the runtimes cache
# (./dev installs them). Without python:3.13 in the cache the image is built without it
# and says at start that python:default is python:3.11 there. Needs the project's .venv
# (./dev sets it up), patchelf, docker and a dockerd.
# Cached: the image carries the label org.squall.inputs, a hash of everything it is made
# from (squall/sandbox/platformimage.py: the wheel's contents, this directory, deploy/nginx,
# the base image's id, the runtimes cache parts' listing); when the tag's label already
# matches, the tag is printed without building. A rebuild removes the image the tag named
# before (that one id only, and only when nothing else uses or tags it).
set -eu
tag=${1:-squall/squall:dev}
repo=$(cd "$(dirname "$0")/../.." && pwd)
py="$repo/.venv/bin/python"
cache=${SQUALL_RUNTIMES_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/squall/runtimes}
label=org.squall.inputs
base=$(PYTHONPATH="$repo" "$py" -m squall.sandbox.images --platform-base)
ctx=$(mktemp -d)
trap 'rm -rf "$ctx"' EXIT
# The wheel is built from a fresh copy: built in the checkout, setuptools' build/lib there
# would keep a deleted module in every later wheel (and so in the image).
mkdir "$ctx/src"
cp -RL "$repo/squall" "$repo/pyproject.toml" "$repo/README.md" "$ctx/src/"
"$py" -m pip wheel --quiet --no-deps -w "$ctx/wheels" "$ctx/src" >/dev/null
rm -rf "$ctx/src"
base_id=$(docker image inspect -f '{{.Id}}' "$base")
inputs=$(PYTHONPATH="$repo" "$py" -m squall.sandbox.platformimage "$repo" "$cache" "$base_id" \
  "$ctx"/wheels/squall-*.whl)
if [ "$(docker image inspect -f "{{index .Config.Labels \"$label\"}}" "$tag" 2>/dev/null)" = "$inputs" ]; then
  echo "build.sh: $tag is up to date ($label=$inputs), not rebuilt" >&2
  echo "$tag"
  exit 0
fi
previous=$(docker image inspect -f '{{.Id}}' "$tag" 2>/dev/null || true)
"$py" -m pip install --quiet --target "$ctx/site" --platform manylinux2014_x86_64 \
  --python-version 3.11 --implementation cp --only-binary=:all: -c "$repo/constraints.txt" \
  "$ctx"/wheels/squall-*.whl >/dev/null
rm -rf "$ctx/site/bin" "$ctx/wheels"
mkdir -p "$ctx/runtimes"
for part in node-20 nodejs-libraries python3.11-libraries; do
  [ -d "$cache/$part" ] || { echo "build.sh: $cache/$part is missing: run ./dev (squall runtimes install)" >&2; exit 1; }
  cp -a "$cache/$part" "$ctx/runtimes/"
done
if [ -x "$cache/python-3.13/usr/bin/python3.13" ] && [ -d "$cache/python3.13-libraries" ]; then
  cp -a "$cache/python-3.13" "$cache/python3.13-libraries" "$ctx/runtimes/"
  PYTHONPATH="$repo" "$py" -c 'import sys; from pathlib import Path; from squall.sandbox.relocation import relocate_tree; relocate_tree(Path(sys.argv[1]), Path(sys.argv[2]))' \
    "$ctx/runtimes/python-3.13" /opt/squall/runtimes/python-3.13
else
  echo "build.sh: python:3.13 is not in $cache, so the image's python:default is python:3.11: run ./dev (squall runtimes install)" >&2
fi
cp -a "$repo/deploy/nginx" "$ctx/nginx"
cp -a "$repo/deploy/docker/bin" "$ctx/bin"
docker build --quiet --build-arg "BASE=$base" --label "$label=$inputs" -t "$tag" \
  -f "$repo/deploy/docker/Dockerfile" "$ctx" >/dev/null
# The tag moved: the image it named would be left dangling (1.16 GB a rebuild). Remove
# that one id; docker refuses when a container uses it or another tag names it.
if [ -n "$previous" ] && [ "$previous" != "$(docker image inspect -f '{{.Id}}' "$tag")" ]; then
  docker image rm "$previous" >/dev/null 2>&1 ||
    echo "build.sh: kept the previous $tag image $previous (in use or tagged elsewhere)" >&2
fi
echo "$tag"
