"""Several hosts on one machine: Linux network namespaces joined by a switch.

Each host is a network namespace (``ip netns add``) with one interface,
``eth0``, the end of a veth pair whose other end is a port of a Linux bridge
in a namespace of its own (the switch). Addresses are on a private /24 picked
at random (10.231.<n>.0). The machine itself (the test) has a port on the
switch too, ``.254``, so that it can reach the API and Redis; the hosts have
no route anywhere else. ``cut(host)``/``mend(host)`` set a host's ``eth0``
down/up: what pulling its cable does.

Everything made here carries one unique prefix and is deleted by ``close``
(namespaces, with the veths in them), also after a failure half-way.
Needs root and iproute2.
"""

from __future__ import annotations

import random
import shutil
import subprocess
import uuid
from dataclasses import dataclass, field


class NetnsError(RuntimeError):
    pass


def ip(*args: str) -> str:
    binary = shutil.which("ip")
    if binary is None:
        raise NetnsError("no `ip` command: install iproute2 (make test-hosts does)")
    done = subprocess.run([binary, *args], capture_output=True, text=True, timeout=30, check=False)
    if done.returncode != 0:
        raise NetnsError(f"ip {' '.join(args)}: {done.stderr.strip()}")
    return done.stdout


@dataclass
class Host:
    name: str  # role, e.g. "w1"
    netns: str
    address: str

    def exec_prefix(self) -> tuple[str, ...]:
        """Run a command on this host: ``ip netns exec <netns> ...``."""
        return (shutil.which("ip") or "ip", "netns", "exec", self.netns)


@dataclass
class Network:
    roles: list[str]
    tag: str = field(default_factory=lambda: uuid.uuid4().hex[:5])
    subnet: int = field(default_factory=lambda: random.randint(1, 254))
    hosts: dict[str, Host] = field(default_factory=dict)
    made: list[str] = field(default_factory=list)  # namespaces, for close()
    root_veth: str = ""

    @property
    def switch(self) -> str:
        return f"jg{self.tag}-sw"

    def address(self, n: int) -> str:
        return f"10.231.{self.subnet}.{n}"

    def open(self) -> Network:
        try:
            self._make()
        except BaseException:
            self.close()
            raise
        return self

    def _make(self) -> None:
        ip("netns", "add", self.switch)
        self.made.append(self.switch)
        ip("-n", self.switch, "link", "add", "br0", "type", "bridge")
        ip("-n", self.switch, "link", "set", "br0", "up")
        ip("-n", self.switch, "link", "set", "lo", "up")
        for n, role in enumerate(self.roles, start=1):
            netns = f"jg{self.tag}-{role}"
            ip("netns", "add", netns)
            self.made.append(netns)
            port = f"jg{self.tag}{role}"[:15]
            ip("link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", netns)
            ip("link", "set", port, "netns", self.switch)
            ip("-n", self.switch, "link", "set", port, "master", "br0", "up")
            ip("-n", netns, "addr", "add", f"{self.address(n)}/24", "dev", "eth0")
            ip("-n", netns, "link", "set", "eth0", "up")
            ip("-n", netns, "link", "set", "lo", "up")
            self.hosts[role] = Host(role, netns, self.address(n))
        # The machine's own port on the switch: the test reaches the hosts by it.
        self.root_veth = f"jg{self.tag}root"
        port = f"jg{self.tag}rp"
        ip("link", "add", self.root_veth, "type", "veth", "peer", "name", port)
        ip("link", "set", port, "netns", self.switch)
        ip("-n", self.switch, "link", "set", port, "master", "br0", "up")
        ip("addr", "add", f"{self.address(254)}/24", "dev", self.root_veth)
        ip("link", "set", self.root_veth, "up")

    def cut(self, role: str) -> None:
        ip("-n", self.hosts[role].netns, "link", "set", "eth0", "down")

    def mend(self, role: str) -> None:
        netns = self.hosts[role].netns
        ip("-n", netns, "link", "set", "eth0", "up")

    def close(self) -> None:
        """Delete every namespace made (their veths go with them), and the machine's port."""
        errors = []
        if self.root_veth:
            try:
                ip("link", "del", self.root_veth)
            except NetnsError as exc:
                errors.append(str(exc))
        for netns in reversed(self.made):
            try:
                ip("netns", "del", netns)
            except NetnsError as exc:
                errors.append(str(exc))
        self.made.clear()
        if errors:
            raise NetnsError("; ".join(errors))


def leftover_namespaces(tag: str) -> list[str]:
    return [line.split()[0] for line in ip("netns", "list").splitlines() if f"jg{tag}-" in line]
