"""Several redis-servers on free loopback ports: a Sentinel set and a Cluster.

Each server is a ``jobgate.redis_server.RedisServer`` (nothing persisted, its
own temporary directory); the sentinels are redis-server in sentinel mode with
a configuration file of their own (a sentinel rewrites it).
"""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import redis

from jobgate.redis_server import RedisServer, find_redis_server, free_port
from tests.support.harness import wait_until

MASTER_NAME = "jobgate-ha"
# A replica's full sync starts at once (Redis waits 5 s by default, for more
# replicas to share one transfer).
FAST_SYNC = ("--repl-diskless-sync-delay", "0")


class SentinelProcess:
    """One sentinel, watching ``MASTER_NAME`` at the given primary."""

    def __init__(self, primary_port: int, down_after_ms: int, failover_timeout_ms: int) -> None:
        self.port = free_port()
        self._dir = tempfile.TemporaryDirectory(prefix="jobgate-sentinel-")
        conf = Path(self._dir.name) / "sentinel.conf"
        conf.write_text(
            f"port {self.port}\n"
            "bind 127.0.0.1\n"
            f"dir {self._dir.name}\n"
            f"logfile {self._dir.name}/sentinel.log\n"
            f"sentinel monitor {MASTER_NAME} 127.0.0.1 {primary_port} 2\n"
            f"sentinel down-after-milliseconds {MASTER_NAME} {down_after_ms}\n"
            f"sentinel failover-timeout {MASTER_NAME} {failover_timeout_ms}\n"
            f"sentinel parallel-syncs {MASTER_NAME} 1\n"
        )
        self.process = subprocess.Popen(
            [find_redis_server(), str(conf), "--sentinel"], stdin=subprocess.DEVNULL
        )
        self.client = redis.Redis(port=self.port, socket_timeout=5, decode_responses=True)
        wait_until(self._answers, 20, f"sentinel on port {self.port}")

    def _answers(self) -> bool:
        try:
            return bool(self.client.ping())
        except redis.ConnectionError:
            return False

    def primary(self) -> tuple[str, int] | None:
        """The primary's address as this sentinel knows it now."""
        try:
            reply: Any = self.client.sentinel_get_master_addr_by_name(MASTER_NAME)
        except redis.RedisError:
            return None
        return None if reply is None else (str(reply[0]), int(reply[1]))

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._dir.cleanup()


class _Servers:
    """``with``: ``start()`` on entry (what it started is closed if it fails),
    ``close()`` on exit."""

    def start(self) -> Self:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        try:
            return self.start()
        except BaseException:
            self.close()
            raise

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class SentinelSet(_Servers):
    """A primary, one replica and three sentinels (quorum 2)."""

    def __init__(self, down_after_ms: int = 1000, failover_timeout_ms: int = 3000) -> None:
        self.down_after_ms = down_after_ms
        self.failover_timeout_ms = failover_timeout_ms
        self.primary = RedisServer(None, *FAST_SYNC)
        self.replica: RedisServer | None = None
        self.sentinels: list[SentinelProcess] = []

    def start(self) -> Self:
        self.primary.start()
        self.replica = RedisServer(
            None, "--replicaof", "127.0.0.1", str(self.primary.port), *FAST_SYNC
        ).start()
        primary = redis.Redis(port=self.primary.port, decode_responses=True)
        wait_until(
            lambda: primary.info("replication").get("connected_slaves") == 1,
            30,
            "the replica to sync",
        )
        self.sentinels = [
            SentinelProcess(self.primary.port, self.down_after_ms, self.failover_timeout_ms)
            for _ in range(3)
        ]
        # Each sentinel has found the replica and the two other sentinels.
        wait_until(self._all_known, 30, "the sentinels to find each other and the replica")
        return self

    def _all_known(self) -> bool:
        for sentinel in self.sentinels:
            try:
                master: Any = sentinel.client.sentinel_master(MASTER_NAME)
            except redis.RedisError:
                return False
            if int(master.get("num-other-sentinels", 0)) < 2 or int(master["num-slaves"]) < 1:
                return False
        return True

    @property
    def addresses(self) -> tuple[str, ...]:
        return tuple(f"127.0.0.1:{s.port}" for s in self.sentinels)

    def primary_port(self) -> int | None:
        """The primary's port, when every sentinel agrees on it."""
        seen = {s.primary() for s in self.sentinels}
        address = seen.pop() if len(seen) == 1 else None
        return None if address is None else address[1]

    def close(self) -> None:
        for sentinel in self.sentinels:
            sentinel.stop()
        for server in (self.primary, self.replica):
            if server is not None:
                server.close()


class Cluster(_Servers):
    """``masters`` redis-servers in cluster mode, no replicas, every slot covered."""

    def __init__(self, masters: int = 3) -> None:
        cluster_args = ("--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf")
        # The cluster bus on a free port of its own (by default port + 10000).
        self.nodes = [
            RedisServer(None, *cluster_args, "--cluster-port", str(free_port()))
            for _ in range(masters)
        ]

    @property
    def url(self) -> str:
        return self.nodes[0].url

    def start(self) -> Self:
        for node in self.nodes:
            node.start()
        addresses = [f"127.0.0.1:{node.port}" for node in self.nodes]
        subprocess.run(
            ["redis-cli", "--cluster", "create", *addresses, "--cluster-replicas", "0",
             "--cluster-yes"],
            check=True,
            stdout=subprocess.DEVNULL,
            stdin=subprocess.DEVNULL,
        )  # fmt: skip
        wait_until(self._ok, 60, "the cluster to cover every slot")
        return self

    def _ok(self) -> bool:
        for node in self.nodes:
            with redis.Redis(port=node.port, decode_responses=True) as client:
                if client.cluster("INFO").get("cluster_state") != "ok":
                    return False
        return True

    def close(self) -> None:
        for node in self.nodes:
            node.close()
