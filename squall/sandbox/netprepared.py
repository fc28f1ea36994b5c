"""Network namespaces made ahead for sandboxes started through bubblewrap: the part of
:class:`~squall.sandbox.network.SandboxNetwork` that keeps them (a mixin of it).

:meth:`~PreparedNamespaces.keep_prepared` keeps a few network namespaces made ahead, each
with its link configured (loopback up, the pair, addresses, routes) as
:meth:`SandboxNetwork.attach <squall.sandbox.network.SandboxNetwork.attach>` would. A
sandbox started through bubblewrap joins one (:meth:`~PreparedNamespaces.take_prepared`,
then :meth:`~PreparedNamespaces.replenish` once started; its launcher ``setns`` into it
before bubblewrap runs, bubblewrap then makes no network namespace) instead of waiting on
its start for the ~5 ms of netlink work ``attach`` does.

Guarantees: each prepared namespace is handed out once, to one sandbox, and its
descriptor closed then: the namespace lives as long as that sandbox. It belongs to the
host's user namespace, in which a sandbox holds no capability: it cannot change its
addresses or routes, as with the namespace bubblewrap makes (owned by the sandbox's user
namespace, where bubblewrap dropped every capability). Taken ones are replaced in the
background, one at a time, after the start that took one (not to compete with it);
``close`` closes the ones left.

Concurrency: a namespace is made by ``unshare`` on the network's worker thread, which goes
back to the host's namespace at once. The pool lives on the event loop;
``SandboxNetwork.close`` may run on another thread, and a lock (``_handover``) hands each
prepared namespace's descriptor over exactly once (to a sandbox, or to close()).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ipaddress
import logging
import os
import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING

from squall.errors import ContainerError
from squall.sandbox.egress import Block
from squall.sandbox.rtnl import NetlinkError, Rtnl

if TYPE_CHECKING:
    from squall.sandbox.network import Lease

log = logging.getLogger("squall.sandbox.network")

CLONE_NEWNET = 0x40000000
libc = ctypes.CDLL(None, use_errno=True)


@dataclass(frozen=True)
class Prepared:
    """A network namespace made ahead, its link set up: ``fd`` holds the namespace (the
    taker joins it, then closes ``fd``), ``lease`` is its link (detached as any)."""

    fd: int
    lease: Lease


class PreparedNamespaces:
    """The prepared namespaces of a :class:`~squall.sandbox.network.SandboxNetwork`; see
    the module docstring. The network's state it uses is declared here."""

    block: Block | None
    _executor: ThreadPoolExecutor
    _rtnl: Rtnl | None
    _free: deque[ipaddress.IPv4Address]
    _leases: dict[str, Lease]

    if TYPE_CHECKING:  # the network's own, used here

        def _lease(self, address: ipaddress.IPv4Address, block: Block) -> Lease: ...

        def _link(
            self, rtnl: Rtnl, lease: Lease, block: Block, make: Callable[[], None]
        ) -> None: ...

        @staticmethod
        def _configure(inner: Rtnl, address: str, gateway: str) -> None: ...

    def _init_prepared(self) -> None:
        # Prepared namespaces (event loop thread), how many to keep, the refill running.
        self._prepared: deque[Prepared] = deque()
        self._keep = 0
        self._refill: asyncio.Task[None] | None = None
        # Descriptors the worker made that the loop has not taken yet: closed by close()
        # if it comes first. ``_handover`` orders close() (any thread) against the loop
        # taking a descriptor into, or out of, the pool: each is closed exactly once.
        self._unclaimed: set[int] = set()
        self._handover = threading.Lock()

    def keep_prepared(self, count: int) -> None:
        """Keep ``count`` namespaces prepared (see the module docstring); the refill starts
        now when an event loop runs here, else at the first :meth:`replenish` (after the
        first start, which attaches its link on its path)."""
        self._keep = count
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return
        self._start_refill()

    @property
    def prepared(self) -> int:
        """How many prepared namespaces are ready now."""
        return len(self._prepared)

    def take_prepared(self) -> Prepared | None:
        """A prepared namespace, or None when none is ready (then :meth:`attach` as
        before). The caller owns it: it joins the namespace and closes ``fd``, and
        detaches ``lease`` when the sandbox is gone; it calls :meth:`replenish` once its
        start is over. Event loop thread."""
        with self._handover:
            return self._prepared.popleft() if self._prepared else None

    def replenish(self) -> None:
        """Make up for what was taken, in the background (event loop thread). Called
        once the start that took one is over, so that the replacement's netlink and
        namespace work does not compete with that start for the CPU."""
        self._start_refill()

    def _start_refill(self) -> None:
        idle = self._refill is None or self._refill.done()
        if idle and len(self._prepared) < self._keep and self.block is not None:
            self._refill = asyncio.ensure_future(self._fill())

    async def _fill(self) -> None:
        """Prepare namespaces until ``_keep`` are ready (one at a time, on the worker
        thread: it never delays an :meth:`attach` by more than one preparation)."""
        loop = asyncio.get_running_loop()
        while len(self._prepared) < self._keep:
            block = self.block
            if block is None or not self._free:
                return
            address = self._free.popleft()
            lease = self._lease(address, block)
            try:
                fd = await loop.run_in_executor(self._executor, self._prepare, lease, block)
            except (ContainerError, RuntimeError) as ex:  # RuntimeError: executor shut down
                self._free.append(address)
                log.warning("cannot prepare a sandbox network namespace: %s", ex)
                return
            with self._handover:
                if self.block is None:  # closed meanwhile: close() closes it
                    return
                self._unclaimed.discard(fd)
                self._leases[lease.ifname] = lease
                self._prepared.append(Prepared(fd, lease))

    def _prepare(self, lease: Lease, block: Block) -> int:
        """A new network namespace with loopback up and ``lease``'s link (worker thread);
        returns a descriptor of it. ContainerError on failure (nothing is left)."""
        if self.block is None:
            # close() began: its link removal may have run already (jobs run in order).
            raise ContainerError("the sandbox network is closed")
        if self._rtnl is None:
            self._rtnl = Rtnl()  # in this thread (see Concurrency above)
        rtnl = self._rtnl
        own = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        namespace = -1
        try:
            try:
                # unshare acts on this thread alone, which goes back to the host's at once.
                if libc.unshare(CLONE_NEWNET) != 0:
                    raise OSError(ctypes.get_errno(), "unshare a network namespace")
                try:
                    namespace = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
                    inner = Rtnl()  # its socket belongs to the new namespace
                finally:
                    if libc.setns(own, CLONE_NEWNET) != 0:  # pragma: no cover - cannot fail
                        os.abort()  # a worker thread stuck in a sandbox's namespace
            finally:
                os.close(own)
            with inner:
                inner.set_up(inner.link_index("lo"))  # bubblewrap does it in its own ones
                self._link(
                    rtnl,
                    lease,
                    block,
                    lambda: rtnl.add_veth(lease.ifname, "eth0", peer_netns=namespace),
                )
                self._configure(inner, str(lease.address), str(block.gateway))
        except OSError as ex:
            with contextlib.suppress(NetlinkError):
                rtnl.delete_link(rtnl.link_index(lease.ifname))
            if namespace >= 0:
                os.close(namespace)
            raise ContainerError(f"cannot prepare a sandbox network namespace: {ex}") from ex
        with self._handover:
            self._unclaimed.add(namespace)
        return namespace

    def _close_prepared(self) -> None:
        """Close every prepared namespace left (close(), after the worker's last job)."""
        with self._handover:
            fds = [p.fd for p in self._prepared] + list(self._unclaimed)
            self._prepared.clear()
            self._unclaimed.clear()
        for fd in fds:
            os.close(fd)
