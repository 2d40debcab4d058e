"""A private CA made by the test with the openssl CLI: server and client certificates for
127.0.0.1, each with the lifetime the test asks for (a certificate ending in 3 days)."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

_EC = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]


@dataclass(frozen=True)
class Issued:
    cert: Path
    key: Path


class TestCA:
    """``TestCA(openssl_bin, tmp_path)``: a CA valid ``days``; :meth:`issue` signs a leaf for
    127.0.0.1. ``openssl``: the ``openssl_bin`` fixture's path (so the test is marked
    ``service``)."""

    __test__ = False  # not a test class

    def __init__(self, openssl: str, directory: Path, days: int = 30, name: str = "ca") -> None:
        self.openssl = openssl
        self.dir = directory
        self.cert = directory / f"{name}.pem"
        self.key = directory / f"{name}.key"
        self._run("req", "-x509", *_EC, "-keyout", self.key, "-out", self.cert,
                  "-days", str(days), "-subj", f"/CN=crackseg test {name}")  # fmt: skip

    def issue(self, name: str, days: int = 30, client: bool = False) -> Issued:
        key, csr, cert = (self.dir / f"{name}{ext}" for ext in (".key", ".csr", ".pem"))
        ext = self.dir / f"{name}.ext"
        usage = "clientAuth" if client else "serverAuth"
        ext.write_text(f"subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage={usage}\n")
        self._run("req", "-new", *_EC, "-keyout", key, "-out", csr, "-subj", f"/CN={name}")
        self._run("x509", "-req", "-in", csr, "-CA", self.cert, "-CAkey", self.key,
                  "-CAcreateserial", "-out", cert, "-days", str(days), "-extfile", ext)  # fmt: skip
        return Issued(cert, key)

    def _run(self, *args: object) -> None:
        subprocess.run([self.openssl, *map(str, args)], check=True, capture_output=True, timeout=60)
