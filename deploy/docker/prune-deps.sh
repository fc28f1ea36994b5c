#!/bin/sh
# Untag the deps images no image is built on (deploy/docker/build.sh runs it after a build):
#   deploy/docker/prune-deps.sh REPOSITORY KEEP
# REPOSITORY is the deps images' (squall/squall-deps), KEEP the tag just built on (never
# removed). Every image build.sh makes names the deps tag it was built FROM in the label
# org.squall.deps (deploy/docker/Dockerfile; images built FROM one inherit it): a deps
# tag that any image still names is kept — another checkout's images, and so its next
# build, still use it — and the others are untagged (docker refuses while a container
# uses one; their layers stay while an image is built on them). The window left: a
# concurrent build in another checkout between taking its deps tag and finishing its
# own image (seconds: the wheel's install and the last layer) is named by no image yet
# (docs/cluster.md).
set -eu
repository=$1
keep=$2
label=org.squall.deps
# The deps tags images name, one a line (images without the label print an empty line).
# An image removed between the listing and the inspect (another checkout's build replacing
# its previous image) makes inspect exit non-zero after printing the others' labels: that
# is no failure of this build (its image is built and tagged), and only a gone image's
# deps tag becomes prunable.
used=$(docker image ls -q --filter "label=$label" | sort -u |
  xargs -r docker image inspect -f "{{index .Config.Labels \"$label\"}}" 2>/dev/null || true)
docker image ls --format '{{.Repository}}:{{.Tag}}' "$repository" | while read -r old; do
  case $old in *:"<none>") continue ;; esac
  [ "$old" != "$keep" ] || continue
  if printf '%s\n' "$used" | grep -qxF -e "$old"; then
    continue # an image is built on it
  fi
  docker image rm "$old" >/dev/null 2>&1 || echo "build.sh: kept the deps image $old (in use)" >&2
done
