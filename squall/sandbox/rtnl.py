"""The few rtnetlink requests the sandbox network makes, on a netlink socket of its own.

:class:`Rtnl` lists links, looks one up by name, creates a veth pair whose other end goes
into the network namespace of a pid, deletes a link, brings one up, adds an IPv4 address
and an IPv4 route — what ``ip link``/``ip addr``/``ip route`` would do, without a
process each. It replaces pyroute2 here: that package loads all of its ~160 modules on
the first import (IPDB, NDB, wireless, ...), ~8 MB of an invoker's memory for these seven
requests (bench/README.md, "memory_at_concurrency.py").

The socket belongs to the network namespace of the thread that opened it (``setns``
before :class:`Rtnl` to act inside a sandbox's). Requests are synchronous and acknowledged
(``NLM_F_ACK``): each returns once the kernel did it, or raises :class:`NetlinkError`
(an ``OSError`` with the kernel's errno). One thread at a time per instance.
"""

from __future__ import annotations

import errno
import ipaddress
import itertools
import os
import socket
import struct
from collections.abc import Iterator

# linux/netlink.h, linux/rtnetlink.h, linux/if_link.h, linux/veth.h
NLMSG_ERROR, NLMSG_DONE = 2, 3
NLM_F_REQUEST, NLM_F_MULTI, NLM_F_ACK = 0x1, 0x2, 0x4
NLM_F_DUMP, NLM_F_EXCL, NLM_F_CREATE = 0x300, 0x200, 0x400
RTM_NEWLINK, RTM_DELLINK, RTM_GETLINK, RTM_NEWADDR, RTM_NEWROUTE = 16, 17, 18, 20, 24
IFLA_IFNAME, IFLA_LINKINFO, IFLA_NET_NS_PID, IFLA_NET_NS_FD = 3, 18, 19, 28
IFLA_INFO_KIND, IFLA_INFO_DATA, VETH_INFO_PEER = 1, 2, 1
IFA_ADDRESS, IFA_LOCAL = 1, 2
RTA_DST, RTA_OIF, RTA_GATEWAY = 1, 4, 5
RT_TABLE_MAIN, RTPROT_BOOT, RTN_UNICAST = 254, 3, 1
RT_SCOPE_UNIVERSE, RT_SCOPE_LINK = 0, 253
IFF_UP = 0x1

_HEADER = struct.Struct("=IHHII")  # nlmsghdr: length, type, flags, sequence, port
_IFINFO = struct.Struct("=BxHiII")  # ifinfomsg: family, type, index, flags, change
_IFADDR = struct.Struct("=BBBBI")  # ifaddrmsg: family, prefix length, flags, scope, index
_RTMSG = struct.Struct("=BBBBBBBBI")  # rtmsg: family, dst/src length, tos, table, ...
_ATTR = struct.Struct("=HH")  # rtattr: length, type
_ERROR = struct.Struct("=i")  # nlmsgerr's error (then the request's header)
RECEIVE_BYTES = 65536


class NetlinkError(OSError):
    """The kernel refused a request (``errno`` says why)."""


def _attr(kind: int, payload: bytes) -> bytes:
    length = _ATTR.size + len(payload)
    return _ATTR.pack(length, kind) + payload + b"\0" * (-length % 4)


def _name(name: str) -> bytes:
    return name.encode() + b"\0"


def _ipv4(address: str) -> bytes:
    return ipaddress.IPv4Address(address).packed


def _attrs(data: bytes) -> Iterator[tuple[int, bytes]]:
    offset = 0
    while offset + _ATTR.size <= len(data):
        length, kind = _ATTR.unpack_from(data, offset)
        if length < _ATTR.size:
            return
        yield kind & 0x3FFF, data[offset + _ATTR.size : offset + length]
        offset += length + (-length % 4)


class Rtnl:
    """A ``NETLINK_ROUTE`` socket in the calling thread's network namespace; see the
    module docstring. A context manager (closes the socket)."""

    def __init__(self) -> None:
        self._socket = socket.socket(
            socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, socket.NETLINK_ROUTE
        )
        self._socket.bind((0, 0))
        self._sequence = itertools.count(1)

    def close(self) -> None:
        self._socket.close()

    def __enter__(self) -> Rtnl:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # -- requests ------------------------------------------------------------------------

    def links(self) -> list[tuple[int, str]]:
        """(index, name) of every link of this namespace."""
        found = []
        for body in self._request(RTM_GETLINK, NLM_F_DUMP, _IFINFO.pack(0, 0, 0, 0, 0)):
            index = _IFINFO.unpack_from(body)[2]
            for kind, value in _attrs(body[_IFINFO.size :]):
                if kind == IFLA_IFNAME:
                    found.append((index, value.rstrip(b"\0").decode()))
        return found

    def link_index(self, name: str) -> int:
        """The index of link ``name``; NetlinkError (ENODEV) when there is none."""
        request = _IFINFO.pack(0, 0, 0, 0, 0) + _attr(IFLA_IFNAME, _name(name))
        for body in self._request(RTM_GETLINK, 0, request):
            return int(_IFINFO.unpack_from(body)[2])
        raise NetlinkError(errno.ENODEV, f"no link {name}")

    def add_veth(
        self, name: str, peer: str, peer_pid: int | None = None, *, peer_netns: int | None = None
    ) -> None:
        """A veth pair: ``name`` here, ``peer`` in the network namespace of ``peer_pid``, or
        in the one the descriptor ``peer_netns`` holds."""
        where = (
            _attr(IFLA_NET_NS_FD, struct.pack("=I", peer_netns))
            if peer_netns is not None
            else _attr(IFLA_NET_NS_PID, struct.pack("=I", peer_pid or 0))
        )
        peer_info = _IFINFO.pack(0, 0, 0, 0, 0) + _attr(IFLA_IFNAME, _name(peer)) + where
        link_info = _attr(IFLA_INFO_KIND, _name("veth")) + _attr(
            IFLA_INFO_DATA, _attr(VETH_INFO_PEER, peer_info)
        )
        request = (
            _IFINFO.pack(0, 0, 0, 0, 0)
            + _attr(IFLA_IFNAME, _name(name))
            + _attr(IFLA_LINKINFO, link_info)
        )
        self._do(RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL, request)

    def delete_link(self, index: int) -> None:
        self._do(RTM_DELLINK, 0, _IFINFO.pack(0, 0, index, 0, 0))

    def set_up(self, index: int) -> None:
        self._do(RTM_NEWLINK, 0, _IFINFO.pack(0, 0, index, IFF_UP, IFF_UP))

    def add_address(self, index: int, address: str, prefix_length: int) -> None:
        """``address``/``prefix_length`` on link ``index`` (IPv4)."""
        packed = _ipv4(address)
        request = (
            _IFADDR.pack(socket.AF_INET, prefix_length, 0, RT_SCOPE_UNIVERSE, index)
            + _attr(IFA_LOCAL, packed)
            + _attr(IFA_ADDRESS, packed)
        )
        self._do(RTM_NEWADDR, NLM_F_CREATE | NLM_F_EXCL, request)

    def add_route(
        self, destination: str, prefix_length: int, oif: int, gateway: str | None = None
    ) -> None:
        """An IPv4 route in the main table: on link (scope link) without ``gateway``,
        else through it."""
        scope = RT_SCOPE_LINK if gateway is None else RT_SCOPE_UNIVERSE
        request = _RTMSG.pack(
            socket.AF_INET, prefix_length, 0, 0, RT_TABLE_MAIN, RTPROT_BOOT, scope, RTN_UNICAST, 0
        )
        if prefix_length:
            request += _attr(RTA_DST, _ipv4(destination))
        request += _attr(RTA_OIF, struct.pack("=I", oif))
        if gateway is not None:
            request += _attr(RTA_GATEWAY, _ipv4(gateway))
        self._do(RTM_NEWROUTE, NLM_F_CREATE | NLM_F_EXCL, request)

    # -- the exchange --------------------------------------------------------------------

    def _do(self, kind: int, flags: int, body: bytes) -> None:
        for _ in self._request(kind, flags | NLM_F_ACK, body):
            pass

    def _request(self, kind: int, flags: int, body: bytes) -> Iterator[bytes]:
        """Send one request; yield the bodies of its answers until the kernel's last
        (its acknowledgement, or the end of a dump). NetlinkError on a refusal."""
        sequence = next(self._sequence)
        header = _HEADER.pack(_HEADER.size + len(body), kind, flags | NLM_F_REQUEST, sequence, 0)
        self._socket.sendto(header + body, (0, 0))
        while True:
            data = self._socket.recv(RECEIVE_BYTES)
            offset, last = 0, False
            while offset + _HEADER.size <= len(data):
                length, answer, answer_flags, answer_sequence, _ = _HEADER.unpack_from(data, offset)
                if length < _HEADER.size:
                    raise NetlinkError(errno.EPROTO, "a netlink message shorter than its header")
                payload = data[offset + _HEADER.size : offset + length]
                offset += length + (-length % 4)
                if answer_sequence != sequence:
                    continue  # an answer to an earlier request that was given up
                if answer == NLMSG_ERROR:
                    (code,) = _ERROR.unpack_from(payload)
                    if code:
                        raise NetlinkError(-code, os.strerror(-code))
                    last = True  # the acknowledgement
                elif answer == NLMSG_DONE:
                    last = True
                else:
                    yield payload
                    if not answer_flags & NLM_F_MULTI and not flags & NLM_F_ACK:
                        last = True  # a single answer to a request without ACK
            if last:
                return
