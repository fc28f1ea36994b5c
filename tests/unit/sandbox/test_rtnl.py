"""The sandbox network's rtnetlink requests, checked against what ``ip`` then reports.

Everything runs in a network namespace the test creates (``unshare --net`` around a child
interpreter), so the host's links are never touched.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from _required import require

ROOT = Path(__file__).resolve().parents[3]

# Runs in a fresh network namespace: the requests, then ``ip``'s view, as JSON.
CHILD = r"""
import errno, json, os, subprocess, sys
from squall.sandbox.rtnl import NetlinkError, Rtnl

def ip(*args):
    return json.loads(subprocess.run(["ip", "-j", *args], capture_output=True, text=True,
                                     check=True).stdout)

seen = {}
with Rtnl() as rtnl:
    seen["before"] = sorted(name for _, name in rtnl.links())
    rtnl.add_veth("sqtest0", "sqpeer0", os.getpid())  # the peer in this same namespace
    index = rtnl.link_index("sqtest0")
    peer = rtnl.link_index("sqpeer0")
    rtnl.add_address(index, "10.77.0.1", 32)
    rtnl.set_up(index)
    rtnl.set_up(peer)
    rtnl.add_route("10.77.0.2", 32, index)
    rtnl.add_route("0.0.0.0", 0, index, gateway="10.77.0.2")
    seen["links"] = sorted(name for _, name in rtnl.links())
    seen["index"] = index == ip("link", "show", "sqtest0")[0]["ifindex"]
    found = ip("-4", "addr", "show", "sqtest0")[0]["addr_info"]
    seen["addresses"] = [(a["local"], a["prefixlen"]) for a in found]
    seen["up"] = "UP" in ip("link", "show", "sqtest0")[0]["flags"]
    seen["routes"] = sorted((r["dst"], r.get("gateway"), r.get("scope")) for r in ip("route"))
    try:
        rtnl.add_address(index, "10.77.0.1", 32)
    except NetlinkError as ex:
        seen["again"] = errno.errorcode[ex.errno]
    try:
        rtnl.link_index("nosuchlink")
    except NetlinkError as ex:
        seen["missing"] = errno.errorcode[ex.errno]
    rtnl.delete_link(index)
    seen["after"] = sorted(name for _, name in rtnl.links())
print(json.dumps(seen))
"""


def test_links_addresses_and_routes_are_made_as_ip_reports_them() -> None:
    # Given a network namespace of the test's own (root, unshare and ip are needed)
    unshare, ip = shutil.which("unshare"), shutil.which("ip")
    require("unshare and ip (util-linux, iproute2)", unshare is not None and ip is not None)
    require("root (network namespaces)", os.geteuid() == 0)
    assert unshare is not None
    # When the child makes a veth pair, an address, the link up and two routes
    done = subprocess.run(
        [unshare, "--net", sys.executable, "-c", CHILD],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        check=False,
    )
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout)
    # Then ip sees exactly them, the kernel's refusals carry its errno, and deleting one
    # end of the pair removes both
    assert seen["before"] == ["lo"]
    assert seen["links"] == ["lo", "sqpeer0", "sqtest0"]
    assert seen["index"] is True and seen["up"] is True
    assert seen["addresses"] == [["10.77.0.1", 32]]
    assert seen["routes"] == [["10.77.0.2", None, "link"], ["default", "10.77.0.2", None]]
    assert seen["again"] == "EEXIST" and seen["missing"] == "ENODEV"
    assert seen["after"] == ["lo"]
