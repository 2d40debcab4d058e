"""Debian's prometheus-alertmanager as a cluster for tests: peers joined with
``--cluster.peer`` on free 127.0.0.1 ports, timings cut so a test runs in seconds."""

from __future__ import annotations

import json
import socket
import subprocess
import urllib.request
from pathlib import Path
from typing import Any

from tests.support.wait import wait_until

#: The route's group_wait: a new group's first notification waits this long for company.
GROUP_WAIT = 0.5
#: The route's group_interval: how often a group's changes (a resolve) are notified.
GROUP_INTERVAL = 2.0
#: How long a peer waits for the one before it to notify (position x this). It must stay
#: well below GROUP_INTERVAL, as in production (15 s against minutes): a later peer
#: judges the state it saw when its wait began, so a change during the wait would be
#: notified once more.
PEER_TIMEOUT = 0.5


def free_ports(n: int) -> list[int]:
    """``n`` distinct ports free on 127.0.0.1 for TCP and UDP (the cluster gossips on both)."""
    held: list[socket.socket] = []
    ports: list[int] = []
    try:
        while len(ports) < n:
            tcp = socket.socket()
            tcp.bind(("127.0.0.1", 0))
            held.append(tcp)
            port = tcp.getsockname()[1]
            udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            try:
                udp.bind(("127.0.0.1", port))
            except OSError:
                udp.close()
                continue
            held.append(udp)
            ports.append(port)
    finally:
        for s in held:
            s.close()
    return ports


def route_config(webhook_url: str) -> str:
    return (
        "route:\n"
        "  receiver: hook\n"
        # The monitor's identity is not in the grouping key: a pair of monitors is one source.
        "  group_by: [alertname, deployment_id]\n"
        f"  group_wait: {int(GROUP_WAIT * 1000)}ms\n"
        f"  group_interval: {int(GROUP_INTERVAL * 1000)}ms\n"
        "  repeat_interval: 1h\n"
        "receivers:\n"
        "  - name: hook\n"
        "    webhook_configs:\n"
        f"      - url: {webhook_url}\n"
        "        send_resolved: true\n"
    )


class ClusterPeer:
    """One ``prometheus-alertmanager`` of a cluster."""

    def __init__(self, binary: str, workdir: Path, webhook_url: str, port: int,
                 cluster_port: int, peers: list[int]) -> None:  # fmt: skip
        workdir.mkdir(parents=True, exist_ok=True)
        self.port = port
        self.cluster_port = cluster_port
        config = workdir / "alertmanager.yml"
        config.write_text(route_config(webhook_url))
        (workdir / "data").mkdir(exist_ok=True)
        self.log_path = workdir / "alertmanager.log"
        self.log = self.log_path.open("wb")
        args = [
            binary, f"--config.file={config}", f"--storage.path={workdir / 'data'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            f"--cluster.listen-address=127.0.0.1:{cluster_port}",
            f"--cluster.advertise-address=127.0.0.1:{cluster_port}",
            *(f"--cluster.peer=127.0.0.1:{p}" for p in peers),
            "--cluster.gossip-interval=50ms", "--cluster.pushpull-interval=1s",
            f"--cluster.peer-timeout={int(PEER_TIMEOUT * 1000)}ms",
            "--cluster.settle-timeout=5s", "--log.level=warn",
        ]  # fmt: skip
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def status(self) -> dict[str, Any]:
        with urllib.request.urlopen(self.url + "/api/v2/status", timeout=2) as r:
            result: dict[str, Any] = json.loads(r.read(1 << 20))
            return result

    def peers(self) -> int:
        return len(self.status().get("cluster", {}).get("peers") or [])

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.log.close()


class AlertmanagerCluster:
    """``size`` peers that know each other; :meth:`wait_joined` waits for full membership."""

    def __init__(self, binary: str, workdir: Path, webhook_url: str, size: int = 2) -> None:
        all_ports = free_ports(2 * size)
        web, ports = all_ports[:size], all_ports[size:]
        self.peers = [
            ClusterPeer(binary, workdir / f"am{i}", webhook_url, web[i], port,
                        [p for p in ports if p != port])
            for i, port in enumerate(ports)
        ]  # fmt: skip

    @property
    def urls(self) -> list[str]:
        return [p.url for p in self.peers]

    def wait_joined(self, timeout: float = 30.0) -> None:
        def joined() -> bool:
            for p in self.peers:
                assert p.proc.poll() is None, p.log_path.read_text(errors="replace")[-2000:]
            return all(p.peers() == len(self.peers) for p in self.peers)

        wait_until(joined, timeout, "every Alertmanager to see its peers")

    def close(self) -> None:
        for p in self.peers:
            p.close()
