"""A path out for each sandbox: veth pairs, addresses and routes, one nftables table.

Each sandbox has a network namespace of its own (bubblewrap's ``--unshare-net``, or the
one a zygote clones a container's init into). :class:`SandboxNetwork` gives such a namespace a
way out, from the host's side (the invoker runs as root; the sandbox itself holds no
capability over its own network and cannot change addresses or routes):

- :meth:`SandboxNetwork.open` claims a block of the sandbox subnet for this invoker by
  creating its nftables table (:func:`squall.sandbox.egress.ruleset`) in one transaction
  — a second invoker on the host fails to create the same table and takes the next block
  — after removing the tables of invokers that died; it turns on IPv4 forwarding;
- :meth:`attach` (given a process in the namespace) creates a veth pair whose host end
  ``<prefix><n>`` holds the block's gateway address (/32, the same on every host end)
  and a /32 route to the sandbox, and whose other end, moved into the namespace as
  ``eth0``, holds the sandbox's address with a default route through the gateway (its
  loopback is the sandbox's own business: bubblewrap and the zygote's init bring it up,
  and bubblewrap fails if it finds it configured already);
- :meth:`detach` removes the pair (the sandbox is left with loopback only); a pair also
  disappears by itself when its namespace dies;
- :meth:`keep_prepared` keeps a few network namespaces made ahead, each with its link,
  for sandboxes started through bubblewrap (:mod:`squall.sandbox.netprepared`);
- :meth:`close` removes the table and every pair still there, and the prepared
  namespaces.

Why veth pairs and nftables rather than a user-mode stack (slirp4netns, pasta): no extra
process per sandbox (memory per container matters), kernel-speed forwarding, and one
place — the table — that decides what a sandbox may reach. Why one /32 per sandbox and no
bridge: sandboxes never share a link, so one cannot spoof or sniff another's traffic, and
anything between two sandboxes is routed through the host, where the table drops it.

Concurrency: netlink work runs in one worker thread of its own (:attr:`_executor`), never
on the event loop — the requests (:mod:`squall.sandbox.rtnl`) are synchronous; the thread
briefly enters a sandbox's network namespace (``setns`` acts on the calling thread only)
and always returns to the host's before it takes the next job. Address bookkeeping
happens on the event loop; the prepared namespaces' handover between the loop and
:meth:`SandboxNetwork.close` is :mod:`squall.sandbox.netprepared`'s.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ipaddress
import itertools
import logging
import os
import re
import subprocess
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from squall.errors import ContainerError
from squall.sandbox.egress import Block, EgressPolicy, ruleset
from squall.sandbox.netprepared import CLONE_NEWNET, PreparedNamespaces, libc
from squall.sandbox.rtnl import NetlinkError, Rtnl

log = logging.getLogger(__name__)

NFT_TIMEOUT_S = 10.0
_OWNER = re.compile(r'comment "pid=(\d+) start=(\d+)"')


@dataclass(frozen=True)
class Lease:
    """One sandbox's link: the host-side interface and the sandbox's address."""

    ifname: str
    address: ipaddress.IPv4Address


def _start_time(pid: int) -> int | None:
    """A process's start time (clock ticks since boot), None when it does not exist."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[19])


def _nft(script: str | None, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["nft", *args] if script is None else ["nft", "-f", "-"],
        input=script,
        capture_output=True,
        text=True,
        timeout=NFT_TIMEOUT_S,
        check=False,
    )


def nft_available() -> str | None:
    """None when ``nft`` runs here, else why not (what to install)."""
    try:
        done = _nft(None, "list", "tables")
    except (OSError, subprocess.TimeoutExpired) as ex:
        return f"nftables (nft) cannot be run: {ex}; apt-get install nftables"
    if done.returncode != 0:
        return f"nftables cannot be used here: {done.stderr.strip()}"
    return None


def _remove_dead_tables() -> None:
    """Drop the tables (and so the blocks) of invokers that are gone."""
    listing = _nft(None, "list", "tables").stdout.split()
    for name in listing:
        if not name.startswith("squall_"):
            continue
        text = _nft(None, "list", "table", "inet", name).stdout
        match = _OWNER.search(text)
        if match is not None and _start_time(int(match[1])) == int(match[2]):
            continue
        _nft(None, "delete", "table", "inet", name)
        index = name.removeprefix("squall_")
        if index.isdigit():
            _delete_links(f"sq{int(index):02x}-")
        log.info("removed the sandbox network of a stopped invoker (%s)", name)


def _delete_links(prefix: str) -> None:
    with Rtnl() as rtnl:
        for index, name in rtnl.links():
            if name.startswith(prefix):
                with contextlib.suppress(NetlinkError):
                    rtnl.delete_link(index)


class SandboxNetwork(PreparedNamespaces):
    """Egress for the sandboxes of one invoker; see the module docstring.

    ``api`` is where sandboxes reach the platform: (host, port) of the API as the invoker
    sees it; sandboxes use ``http(s)://<gateway>:<port>`` (:meth:`api_host`).
    """

    def __init__(self, policy: EgressPolicy, api: tuple[str, int] | None) -> None:
        self.policy = policy
        self.api = api
        self.block: Block | None = None
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="squall-net")
        self._rtnl: Rtnl | None = None
        # Free addresses, oldest released first: an address is reused as late as possible.
        self._free: deque[ipaddress.IPv4Address] = deque()
        self._names = itertools.count()
        self._leases: dict[str, Lease] = {}
        self._init_prepared()

    # -- life ----------------------------------------------------------------------------

    def open(self) -> Block:
        """Claim a block and install its table (blocking; call before serving).
        ContainerError when nftables is missing or every block is taken."""
        failure = nft_available()
        if failure is not None:
            raise ContainerError(failure)
        self._executor.submit(_remove_dead_tables).result()
        pid = os.getpid()
        owner = f"pid={pid} start={_start_time(pid)}"
        for index, network in enumerate(self.policy.blocks()):
            block = Block(index, network)
            done = _nft(ruleset(self.policy, block, self.api, owner))
            if done.returncode == 0:
                break
            if "File exists" not in done.stderr:
                reason = done.stderr.strip()
                raise ContainerError(f"cannot install the sandbox network rules: {reason}")
        else:
            subnet = self.policy.subnet
            raise ContainerError(f"every block of the sandbox subnet {subnet} is in use")
        Path("/proc/sys/net/ipv4/ip_forward").write_text("1")
        self.block = block
        hosts = network.hosts()
        next(hosts)  # the first is the gateway
        self._free = deque(hosts)
        log.info(
            "sandbox network: %s, gateway %s, table inet %s", network, block.gateway, block.table
        )
        return block

    def close(self) -> None:
        """Remove the table and the links still there, close the prepared namespaces
        (blocking; from any thread: a refill running on the event loop stops by itself).
        Idempotent."""
        with self._handover:
            block, self.block = self.block, None
            self._keep = 0
        if block is None:
            return
        # The worker finishes what it was given first: nothing makes a namespace after.
        self._executor.submit(self._close_links, block.prefix).result()
        self._close_prepared()
        _nft(None, "delete", "table", "inet", block.table)
        self._executor.shutdown(wait=False)

    def _close_links(self, prefix: str) -> None:
        _delete_links(prefix)
        if self._rtnl is not None:
            self._rtnl.close()
            self._rtnl = None

    def api_host(self, scheme: str) -> str | None:
        """``__OW_API_HOST`` as a sandbox must write it, None when no API is reachable."""
        if self.block is None or self.api is None:
            return None
        return f"{scheme}://{self.block.gateway}:{self.api[1]}"

    def resolv_conf(self) -> str:
        return "".join(f"nameserver {a}\n" for a in self.policy.resolvers if a.version == 4)

    # -- one sandbox ---------------------------------------------------------------------

    async def attach(self, pid: int) -> Lease:
        """Give the network namespace of ``pid`` its way out; ContainerError on failure
        (nothing is left behind then)."""
        block = self.block
        if block is None or not self._free:
            raise ContainerError("the sandbox network has no free address")
        address = self._free.popleft()
        lease = self._lease(address, block)
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(self._executor, self._attach, pid, lease, block)
        except BaseException:
            self._free.append(address)
            raise
        self._leases[lease.ifname] = lease
        return lease

    async def detach(self, lease: Lease) -> None:
        """Remove the sandbox's link (it keeps its loopback). Idempotent."""
        if self._leases.pop(lease.ifname, None) is None:
            return
        loop = asyncio.get_running_loop()
        with contextlib.suppress(RuntimeError):  # the executor is gone: close() removed it
            await loop.run_in_executor(self._executor, self._detach, lease)
        self._free.append(lease.address)

    def _attach(self, pid: int, lease: Lease, block: Block) -> None:
        if self._rtnl is None:
            self._rtnl = Rtnl()  # in this thread (see Concurrency above)
        rtnl = self._rtnl
        gateway = str(block.gateway)
        try:
            self._link(rtnl, lease, block, lambda: rtnl.add_veth(lease.ifname, "eth0", pid))
            self._configure_inside(pid, str(lease.address), gateway)
        except OSError as ex:  # NetlinkError among them
            with contextlib.suppress(NetlinkError):
                rtnl.delete_link(rtnl.link_index(lease.ifname))
            raise ContainerError(f"cannot connect the sandbox to the network: {ex}") from ex

    def _lease(self, address: ipaddress.IPv4Address, block: Block) -> Lease:
        return Lease(f"{block.prefix}{next(self._names):x}", address)

    def _link(self, rtnl: Rtnl, lease: Lease, block: Block, make: Callable[[], None]) -> None:
        """The pair (``make``) and its host end: the gateway address, up, the route."""
        make()
        index = rtnl.link_index(lease.ifname)
        rtnl.add_address(index, str(block.gateway), 32)
        rtnl.set_up(index)
        rtnl.add_route(str(lease.address), 32, index)
        if self.api is not None and ipaddress.ip_address(self.api[0]).is_loopback:
            # The API's DNAT leads to loopback: allowed for packets from this link only.
            Path(f"/proc/sys/net/ipv4/conf/{lease.ifname}/route_localnet").write_text("1")

    @staticmethod
    def _configure_inside(pid: int, address: str, gateway: str) -> None:
        own = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        theirs = os.open(f"/proc/{pid}/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        try:
            if libc.setns(theirs, CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), "setns into the sandbox's network")
            try:
                inner = Rtnl()  # its netlink socket belongs to the sandbox's namespace
            finally:
                if libc.setns(own, CLONE_NEWNET) != 0:  # pragma: no cover - cannot fail
                    os.abort()  # a worker thread stuck in a sandbox's namespace
        finally:
            os.close(own)
            os.close(theirs)
        with inner:
            SandboxNetwork._configure(inner, address, gateway)

    @staticmethod
    def _configure(inner: Rtnl, address: str, gateway: str) -> None:
        """The sandbox's end, through a netlink socket of its namespace."""
        eth0 = inner.link_index("eth0")
        inner.add_address(eth0, address, 32)
        inner.set_up(eth0)
        inner.add_route(gateway, 32, eth0)
        inner.add_route("0.0.0.0", 0, eth0, gateway=gateway)

    def _detach(self, lease: Lease) -> None:
        rtnl = self._rtnl
        if rtnl is None:
            return
        with contextlib.suppress(NetlinkError):
            rtnl.delete_link(rtnl.link_index(lease.ifname))
