"""Where containers' cgroups live: the host's cgroup layout and one factory's parent cgroup.

:func:`detect` reads ``/proc/self/mountinfo`` and picks cgroup v2 when a unified hierarchy
offers the ``memory`` and ``pids`` controllers, else cgroup v1 when the ``memory``,
``pids`` and ``freezer`` hierarchies are mounted (the ``cpu`` controller is used when
present, in either layout). A hybrid host (v1 controllers plus an empty
``/sys/fs/cgroup/unified``) is treated as v1.

Layout: ``<hierarchy>/<root>/<container id>`` — :class:`CgroupRoot` is the parent of one
container factory's cgroups; each container gets a :class:`~squall.sandbox.cgroups.Cgroup`
below it. In v1 the same relative path exists in every controller's hierarchy.

Guarantee: :meth:`CgroupRoot.prepare` kills and removes every leftover child cgroup (a
previous invoker that crashed): call it only while holding the factory's lock on its
directory. It blocks (bounded) while killed processes exit: it is for start-up.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path

from squall.errors import ContainerError
from squall.sandbox.cgroups import Cgroup, CgroupV1, CgroupV2, Limits, write

MOUNTINFO = Path("/proc/self/mountinfo")
V1_REQUIRED = ("memory", "pids", "freezer")
V2_REQUIRED = ("memory", "pids")


@dataclass(frozen=True)
class Hierarchy:
    """The cgroup mounts of this host: v2 (one mount) or v1 (one mount per controller)."""

    version: int
    mounts: dict[str, Path]  # v1: controller -> mount point; v2: {"unified": mount point}
    cpu: bool  # whether CPU shares/weight can be set

    def root(self, relative: str) -> CgroupRoot:
        """The parent cgroup ``relative`` (e.g. ``squall/3f2a``) in this hierarchy."""
        return CgroupRoot(self, relative.strip("/"))


def detect(mountinfo: Path = MOUNTINFO) -> Hierarchy:
    """The usable cgroup hierarchy; raises ContainerError saying what is missing."""
    v1: dict[str, Path] = {}
    v2: Path | None = None
    for line in mountinfo.read_text().splitlines():
        left, _, right = line.partition(" - ")
        fields = right.split()
        if len(fields) < 3:
            continue
        point = Path(left.split()[4].replace("\\040", " "))
        if fields[0] == "cgroup2":
            v2 = v2 or point
        elif fields[0] == "cgroup":
            for option in fields[2].split(","):
                v1.setdefault(option, point)
    if v2 is not None:
        try:
            available = (v2 / "cgroup.controllers").read_text().split()
        except OSError:
            available = []
        if all(c in available for c in V2_REQUIRED):
            return Hierarchy(2, {"unified": v2}, cpu="cpu" in available)
    missing = [c for c in V1_REQUIRED if c not in v1]
    if missing:
        raise ContainerError(
            "no usable cgroups: cgroup v2 without the memory and pids controllers, and "
            f"no cgroup v1 hierarchy for {', '.join(missing)}"
        )
    controllers = {c: v1[c] for c in (*V1_REQUIRED, "cpu") if c in v1}
    return Hierarchy(1, controllers, cpu="cpu" in controllers)


class CgroupRoot:
    """The parent cgroup of one factory's containers; see the module docstring."""

    def __init__(self, hierarchy: Hierarchy, relative: str) -> None:
        self.hierarchy = hierarchy
        self.relative = relative
        self.directories = [mount / relative for mount in hierarchy.mounts.values()]

    def prepare(self) -> int:
        """Create the parent cgroup, then kill and remove leftover children.

        Returns how many leftovers were removed. Raises ContainerError when the parent
        cannot be created or configured (a read-only or non-delegated cgroup tree).
        """
        try:
            for directory in self.directories:
                directory.mkdir(parents=True, exist_ok=True)
            if self.hierarchy.version == 2:
                self._enable_v2_controllers()
        except OSError as ex:
            raise ContainerError(f"cannot create cgroup {self.relative}: {ex}") from ex
        stale = {
            child.name
            for directory in self.directories
            for child in directory.iterdir()
            if child.is_dir()
        }
        for name in stale:
            self._group(name).remove()
        return len(stale)

    def create(self, name: str, limits: Limits | None) -> Cgroup:
        """A new child cgroup with ``limits`` written; ContainerError if that fails.

        ``None`` leaves the limits to a later ``limit`` call, which must come before any
        untrusted code runs in it (the zygote prepares spare cgroups this way)."""
        group = self._group(name)
        try:
            for directory in group.directories:
                directory.mkdir()
            if limits is not None:
                group.limit(limits)
        except OSError as ex:
            group.remove(timeout=0)
            raise ContainerError(f"cannot set up cgroup {self.relative}/{name}: {ex}") from ex
        return group

    def remove(self) -> None:
        """Remove the (empty) parent directories; leftovers keep them, silently."""
        for directory in self.directories:
            with contextlib.suppress(OSError):
                directory.rmdir()

    def _group(self, name: str) -> Cgroup:
        if self.hierarchy.version == 2:
            return CgroupV2(name, self.directories[0] / name, self.hierarchy.cpu)
        controllers = {
            controller: mount / self.relative / name
            for controller, mount in self.hierarchy.mounts.items()
        }
        return CgroupV1(name, controllers)

    def _enable_v2_controllers(self) -> None:
        # Each level from the mount down to our parent must hand the controllers to its
        # children ("no internal processes": only levels without processes of their own
        # can, which is why containers are leaves below a parent of their own).
        wanted = ["memory", "pids"] + (["cpu"] if self.hierarchy.cpu else [])
        level = self.hierarchy.mounts["unified"]
        levels = [level]
        for part in self.relative.split("/"):
            level = level / part
            levels.append(level)
        for level in levels:
            enabled = (level / "cgroup.subtree_control").read_text().split()
            for controller in wanted:
                if controller not in enabled:
                    write(level / "cgroup.subtree_control", f"+{controller}")
