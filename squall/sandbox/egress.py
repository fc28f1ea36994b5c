"""Where a sandbox may connect: the egress policy and its nftables ruleset.

Actions reach the outside as in OpenWhisk and Lambda, but never the platform or the
networks behind it. :class:`EgressPolicy` holds the operator's choices (allow and deny
rules, the resolvers sandboxes use, the one platform port they may reach) and
:func:`ruleset` turns them into one nftables table per invoker, applied as a single
transaction by :class:`squall.sandbox.network.SandboxNetwork`.

What the table guarantees, for traffic from the invoker's sandbox interfaces (host side
of each sandbox's veth, named ``<prefix>…``):

- nothing reaches the host itself (its loopback, any of its addresses, any port) except
  the platform's API, on the gateway address at the API's port, which is rewritten
  (DNAT) to where the API really listens — loopback included;
- nothing reaches :data:`DENIED_V4` (loopback, private and shared
  ranges, link-local and the metadata address 169.254.169.254, multicast, reserved),
  another sandbox (the whole sandbox subnet is denied too), or a deny rule — unless an allow
  rule names it (an allow rule wins over every deny, the host's own addresses excepted);
- DNS (UDP and TCP port 53) is allowed to the configured resolvers only, even when they
  sit in a denied range (the usual case: a resolver on the local network);
- no connection into a sandbox is ever opened from outside (replies only);
- everything else leaves through the host's routes, masqueraded to the host's address.

IPv6: sandboxes get no IPv6 address or route, and the table refuses any IPv6 they send;
egress is IPv4 only.

Rules are text: ``CIDR`` or ``CIDR:PORT`` or ``CIDR:LOW-HIGH`` (an address alone is a
/32), separated by commas, e.g. ``203.0.113.0/24:443,10.1.2.3:5432``. IPv6 rules are
written ``[CIDR]:PORT``.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field

from squall.errors import ContainerError

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address

#: Never reachable from a sandbox unless an allow rule names them.
DENIED_V4 = tuple(
    ipaddress.IPv4Network(n)
    for n in (
        "0.0.0.0/8",  # "this network"
        "10.0.0.0/8",  # private
        "100.64.0.0/10",  # shared (carrier-grade NAT)
        "127.0.0.0/8",  # loopback
        "169.254.0.0/16",  # link-local, cloud metadata (169.254.169.254)
        "172.16.0.0/12",  # private
        "192.0.0.0/24",  # IETF protocol assignments
        "192.168.0.0/16",  # private
        "198.18.0.0/15",  # benchmarking
        "224.0.0.0/4",  # multicast
        "240.0.0.0/4",  # reserved, broadcast
    )
)
DNS_PORT = 53
#: Refused, not dropped: an action learns at once that it may not connect (as from a
#: firewall that answers), instead of waiting for its own timeout.
REJECT = "reject with icmpx type admin-prohibited"

_RULE = re.compile(
    r"^(?:\[(?P<v6>[^\]]+)\]|(?P<v4>[^:\[\]]+))(?::(?P<low>\d+)(?:-(?P<high>\d+))?)?$"
)
DEFAULT_SUBNET = ipaddress.IPv4Network("172.29.0.0/16")


@dataclass(frozen=True)
class Rule:
    """A destination: a network and, optionally, an inclusive port range (TCP and UDP)."""

    network: Network
    ports: tuple[int, int] | None = None

    def __str__(self) -> str:
        net = f"[{self.network}]" if self.network.version == 6 else str(self.network)
        if self.ports is None:
            return net
        low, high = self.ports
        return f"{net}:{low}" if low == high else f"{net}:{low}-{high}"


def parse_rules(text: str) -> tuple[Rule, ...]:
    """Rules from their text form (see the module docstring); ContainerError when one is
    malformed, naming it."""
    rules: list[Rule] = []
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        match = _RULE.match(item)
        if match is None:
            raise ContainerError(f"not an egress rule (CIDR[:PORT[-PORT]]): {item!r}")
        try:
            network = ipaddress.ip_network(match["v6"] or match["v4"], strict=False)
        except ValueError as ex:
            raise ContainerError(f"not an egress rule: {item!r}: {ex}") from None
        ports = None
        if match["low"] is not None:
            low = int(match["low"])
            high = int(match["high"]) if match["high"] is not None else low
            if not 0 < low <= high <= 65535:
                raise ContainerError(f"not an egress rule: {item!r}: ports are 1 to 65535")
            ports = (low, high)
        rules.append(Rule(network, ports))
    return tuple(rules)


def host_resolvers(path: str = "/etc/resolv.conf") -> tuple[Address, ...]:
    """The host's name servers (``nameserver`` lines), the loopback ones left out: a
    sandbox cannot use a resolver that listens on the host's loopback."""
    found: list[Address] = []
    try:
        with open(path) as file:
            lines = file.read().splitlines()
    except OSError:
        return ()
    for line in lines:
        words = line.split()
        if len(words) >= 2 and words[0] == "nameserver":
            try:
                address = ipaddress.ip_address(words[1].split("%")[0])
            except ValueError:
                continue
            if not address.is_loopback:
                found.append(address)
    return tuple(found)


@dataclass(frozen=True)
class EgressPolicy:
    """The platform's egress settings (see the module docstring).

    ``allow`` and ``deny`` are the operator's rules; ``resolvers`` the name servers written
    into every sandbox's ``resolv.conf`` (port 53 to them is allowed); ``subnet`` the IPv4
    range sandbox addresses come from (each invoker on a host claims one block of it).
    """

    allow: tuple[Rule, ...] = ()
    deny: tuple[Rule, ...] = ()
    resolvers: tuple[Address, ...] = field(default_factory=host_resolvers)
    subnet: ipaddress.IPv4Network = DEFAULT_SUBNET
    block_prefix: int = 20

    def __post_init__(self) -> None:
        if self.block_prefix < self.subnet.prefixlen or self.block_prefix > 28:
            raise ContainerError(
                f"the sandbox subnet {self.subnet} cannot hold /{self.block_prefix} blocks"
            )

    @classmethod
    def from_text(
        cls, *, allow: str = "", deny: str = "", dns: str = "", subnet: str = ""
    ) -> EgressPolicy:
        """From settings' text (empty: the defaults; ``dns`` empty: the host's resolvers)."""
        try:
            resolvers = tuple(ipaddress.ip_address(a.strip()) for a in dns.split(",") if a.strip())
            net = ipaddress.IPv4Network(subnet, strict=False) if subnet else DEFAULT_SUBNET
        except ValueError as ex:
            raise ContainerError(f"bad sandbox network setting: {ex}") from None
        policy = cls(allow=parse_rules(allow), deny=parse_rules(deny), subnet=net)
        if resolvers:
            policy = cls(allow=policy.allow, deny=policy.deny, resolvers=resolvers, subnet=net)
        return policy

    def blocks(self) -> list[ipaddress.IPv4Network]:
        """The blocks invokers on one host claim (one each)."""
        return list(self.subnet.subnets(new_prefix=self.block_prefix))


@dataclass(frozen=True)
class Block:
    """One invoker's share of the sandbox subnet: its gateway (the host side of every
    veth) and the addresses its sandboxes get."""

    index: int
    network: ipaddress.IPv4Network

    @property
    def gateway(self) -> ipaddress.IPv4Address:
        return self.network.network_address + 1

    @property
    def table(self) -> str:
        return f"squall_{self.index}"

    @property
    def prefix(self) -> str:
        """Host-side interface names start with this (IFNAMSIZ leaves 15 characters)."""
        return f"sq{self.index:02x}-"


def _set(items: list[str]) -> str:
    return "{ " + ", ".join(items) + " }"


def _ports(rule: Rule) -> str:
    if rule.ports is None:
        return ""
    low, high = rule.ports
    span = str(low) if low == high else f"{low}-{high}"
    return f" meta l4proto {{ tcp, udp }} th dport {span}"


def _match(rule: Rule) -> str:
    family = "ip" if rule.network.version == 4 else "ip6"
    return f"{family} daddr {rule.network}{_ports(rule)}"


def ruleset(policy: EgressPolicy, block: Block, api: tuple[str, int] | None, owner: str) -> str:
    """The nftables script that creates ``block``'s table (fails if it exists: that is
    how a block is claimed). ``api`` is where the gateway's API port leads (host, port);
    ``owner`` is written as the table's comment (who to ask whether it is still used)."""
    sandboxes = f'iifname "{block.prefix}*"'
    into = f'oifname "{block.prefix}*"'
    gateway = block.gateway
    # The whole sandbox subnet: no sandbox reaches another, of this invoker or another.
    denied_v4 = [str(n) for n in (*DENIED_V4, policy.subnet)]
    denied_v4 += [str(r.network) for r in policy.deny if r.network.version == 4 and r.ports is None]
    lines = [
        f'create table inet {block.table} {{ comment "{owner}"; }}',
        f"table inet {block.table} {{",
        "  chain prerouting {",
        "    type nat hook prerouting priority dstnat; policy accept;",
    ]
    if api is not None:
        host, port = api
        lines.append(
            f"    {sandboxes} ip daddr {gateway} tcp dport {port} dnat ip to {host}:{port}"
        )
    lines += [
        "  }",
        "  chain postrouting {",
        "    type nat hook postrouting priority srcnat; policy accept;",
        f'    ip saddr {block.network} oifname != "{block.prefix}*" masquerade',
        "  }",
        "  chain input {",
        "    type filter hook input priority filter; policy accept;",
        f"    {sandboxes} ct state established,related accept",
        # The API, after the DNAT above: the only connection to the host a sandbox opens.
        f"    {sandboxes} ct status dnat accept",
        f"    {sandboxes} {REJECT}",
        "  }",
        "  chain forward {",
        "    type filter hook forward priority filter; policy accept;",
        f"    {into} ct state established,related accept",
        f"    {into} {REJECT}",
        f"    {sandboxes} meta nfproto ipv6 {REJECT}",
        f"    {sandboxes} ct state established,related accept",
    ]
    lines += [f"    {sandboxes} {_match(rule)} accept" for rule in policy.allow]
    resolvers = [str(a) for a in policy.resolvers if a.version == 4]
    if resolvers:
        lines.append(
            f"    {sandboxes} ip daddr {_set(resolvers)} meta l4proto {{ tcp, udp }} "
            f"th dport {DNS_PORT} accept"
        )
    lines.append(f"    {sandboxes} ip daddr {_set(denied_v4)} {REJECT}")
    lines += [f"    {sandboxes} {_match(rule)} {REJECT}" for rule in policy.deny if rule.ports]
    lines += [f"    {sandboxes} accept", "  }", "}"]
    return "\n".join(lines) + "\n"
