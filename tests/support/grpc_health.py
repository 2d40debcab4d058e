"""A real ``grpc.health.v1`` server on 127.0.0.1 (grpcio's own servicer), and a count of the
TCP connections this process holds open to it (what a leaked channel leaves behind)."""

from __future__ import annotations

from concurrent import futures
from typing import Any

import grpc
import psutil
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


class HealthServer:
    """A grpc server with the standard health servicer; ``set(service, status)`` flips it."""

    def __init__(self, credentials: Any = None, port: int = 0) -> None:
        """``port`` 0: any free port; another: that one again (a server restarted)."""
        self.servicer = health.HealthServicer()
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
        health_pb2_grpc.add_HealthServicer_to_server(self.servicer, self.server)
        if credentials is None:
            self.port = self.server.add_insecure_port(f"127.0.0.1:{port}")
        else:
            self.port = self.server.add_secure_port(f"127.0.0.1:{port}", credentials)
        self.server.start()

    def set(self, service: str, status: int) -> None:
        self.servicer.set(service, status)

    def client_connections(self) -> int:
        """Established TCP connections from this process to the server (the client ends:
        the server's own sockets have its port as their local one)."""
        return sum(
            1
            for c in psutil.Process().net_connections(kind="tcp")
            if c.status == psutil.CONN_ESTABLISHED and c.raddr and c.raddr.port == self.port
        )

    def stop(self) -> None:
        self.server.stop(grace=None).wait(10)
