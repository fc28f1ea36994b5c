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
# Two layers (squall/sandbox/platformimage.py): the deps image (Dockerfile.deps: the base,
# the dependencies, the runtimes, nginx/, bin/; ~1.1 GB) is tagged squall/squall-deps:HASH,
# a hash of its own inputs, and built only when no image has that tag; the image itself is
# FROM it plus the Squall wheel installed without dependencies (a few MB, seconds), so a
# change in squall/ rebuilds that last layer alone. A deps image no image is built on any
# more is untagged (deploy/docker/prune-deps.sh: each image names its deps tag in the
# label org.squall.deps).
# Cached: the image carries the label org.squall.inputs, a hash of everything it is made
# from (the deps hash, the wheel's contents, pyproject.toml, the Dockerfile); when the
# tag's label already matches, the tag is printed without building. A rebuild removes the
# image the tag named before (that one id only, and only when nothing else uses or tags
# it). The label org.squall.checkout names the checkout it was built from.
set -eu
tag=${1:-squall/squall:dev}
repo=$(cd "$(dirname "$0")/../.." && pwd)
py="$repo/.venv/bin/python"
cache=${SQUALL_RUNTIMES_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/squall/runtimes}
label=org.squall.inputs
deps_repository=squall/squall-deps
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
hashes=$(PYTHONPATH="$repo" "$py" -m squall.sandbox.platformimage "$repo" "$cache" "$base_id" \
  "$ctx"/wheels/squall-*.whl)
deps_inputs=${hashes% *}
inputs=${hashes#* }
deps="$deps_repository:$deps_inputs"
if [ "$(docker image inspect -f "{{index .Config.Labels \"$label\"}}" "$tag" 2>/dev/null)" = "$inputs" ]; then
  echo "build.sh: $tag is up to date ($label=$inputs), not rebuilt" >&2
  echo "$tag"
  exit 0
fi
previous=$(docker image inspect -f '{{.Id}}' "$tag" 2>/dev/null || true)
if [ "$(docker image inspect -f "{{index .Config.Labels \"$label\"}}" "$deps" 2>/dev/null)" != "$deps_inputs" ]; then
  echo "build.sh: building the deps image $deps (the dependencies, runtimes, nginx, bin)" >&2
  mkdir "$ctx/deps"
  PYTHONPATH="$repo" "$py" -m squall.sandbox.platformimage --requirements "$repo" \
    >"$ctx/requirements.txt"
  "$py" -m pip install --quiet --target "$ctx/deps/site" --platform manylinux2014_x86_64 \
    --python-version 3.11 --implementation cp --only-binary=:all: -c "$repo/constraints.txt" \
    -r "$ctx/requirements.txt" >/dev/null
  rm -rf "$ctx/deps/site/bin"
  mkdir -p "$ctx/deps/runtimes"
  for part in node-20 nodejs-libraries python3.11-libraries; do
    [ -d "$cache/$part" ] || { echo "build.sh: $cache/$part is missing: run ./dev (squall runtimes install)" >&2; exit 1; }
    cp -a "$cache/$part" "$ctx/deps/runtimes/"
  done
  if [ -x "$cache/python-3.13/usr/bin/python3.13" ] && [ -d "$cache/python3.13-libraries" ]; then
    cp -a "$cache/python-3.13" "$cache/python3.13-libraries" "$ctx/deps/runtimes/"
    PYTHONPATH="$repo" "$py" -c 'import sys; from pathlib import Path; from squall.sandbox.relocation import relocate_tree; relocate_tree(Path(sys.argv[1]), Path(sys.argv[2]))' \
      "$ctx/deps/runtimes/python-3.13" /opt/squall/runtimes/python-3.13
  else
    echo "build.sh: python:3.13 is not in $cache, so the image's python:default is python:3.11: run ./dev (squall runtimes install)" >&2
  fi
  cp -a "$repo/deploy/nginx" "$ctx/deps/nginx"
  cp -a "$repo/deploy/docker/bin" "$ctx/deps/bin"
  docker build --quiet --build-arg "BASE=$base" --label "$label=$deps_inputs" -t "$deps" \
    -f "$repo/deploy/docker/Dockerfile.deps" "$ctx/deps" >/dev/null
  rm -rf "$ctx/deps"
fi
# The last layer: Squall alone, merged into the deps image's /opt/squall/site.
mkdir "$ctx/app"
"$py" -m pip install --quiet --no-deps --no-index --target "$ctx/app/site" \
  "$ctx"/wheels/squall-*.whl >/dev/null
rm -rf "$ctx/app/site/bin"
docker build --quiet --build-arg "DEPS=$deps" --label "$label=$inputs" \
  --label "org.squall.checkout=$repo" -t "$tag" -f "$repo/deploy/docker/Dockerfile" \
  "$ctx/app" >/dev/null
# The tag moved: the image it named would be left dangling. Remove that one id when no
# other tag names it (by id, docker would remove every tag of the same repository with
# it: squall/squall:dev beside :test); docker refuses when a container uses it. Its
# untagged parents go with it: an old deps image no tag names any more.
if [ -n "$previous" ] && [ "$previous" != "$(docker image inspect -f '{{.Id}}' "$tag")" ]; then
  if [ "$(docker image inspect -f '{{len .RepoTags}}' "$previous")" != 0 ] ||
    ! docker image rm "$previous" >/dev/null 2>&1; then
    echo "build.sh: kept the previous $tag image $previous (in use or tagged elsewhere)" >&2
  fi
fi
# Deps images are 1.1 GB each: untag those no image is built on (the label
# org.squall.deps, set by the Dockerfile, names the one an image was built FROM), so
# another checkout's deps image stays while its images do.
"$repo/deploy/docker/prune-deps.sh" "$deps_repository" "$deps"
echo "$tag"
