"""nginx as the traffic router: weighted upstreams, validated, reloaded gracefully, confirmed live.

The files it keeps in ``workdir`` are described in :mod:`.nginx_conf`, which renders them.

With ``owns_process=False`` the router starts no nginx: your nginx config must ``include`` the
``upstream.conf`` at ``http`` level and ``locations.conf`` inside the ``server`` that listens on
``listen_port`` (or, with ``server_snippet=True``, ``upstream.conf`` and the ``server.conf``
the router writes, both at ``http`` level); candidates are checked with ``nginx -t`` of
``main_config`` when given, and the router reloads it with ``nginx [-c main_config] -s
reload``. ``listen_tls`` adds a TLS ``listen`` (certificate and key paths) to the server. In owned mode
a live nginx already serving ``workdir`` (its pid file; left by a program that died) is
adopted, with its routes, instead of a second one being started.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import weakref
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from crackseg.utils.deployment.errors import ConfigProblems, RouterError
from crackseg.utils.deployment.files import atomic_write
from crackseg.utils.deployment.processes import free_port, host_port, signal_group
from crackseg.utils.deployment.rollout.routers.base import (
    Backend,
    Served,
    TrafficRouter,
    TrafficStats,
)
from crackseg.utils.deployment.rollout.routers.nginx_conf import (
    CLOSED_LOCATIONS,
    CONFIG_PATH,
    LOCATIONS_CONF,
    MAIN_CONF,
    SERVER_CONF,
    UPSTREAM_NAME,
    TlsListen,
    check_listen_host,
    conf_value,
    describe,
    durations,
    file_backends,
    file_generation,
    listen_address,
    pid_file_of,
    render_tls,
    render_upstream,
    sample_versions,
    seconds,
    served_generation,
    still_accepting,
    validate,
)
from crackseg.utils.deployment.rollout.routers.nginx_log import (
    LOAD_HEADER,
    LOG_FORMAT_NAME,
    AccessLogReader,
    load_token,
    stratum_map,
)
from crackseg.utils.deployment.rollout.routers.nginx_process import (
    adoptable_master,
    log_tail,
    master_alive,
    nginx_test,
    read_pid,
    signal_host,
    stop_master,
    test_host_config,
    worker_pids,
)

__all__ = ["NginxRouter"]

logger = logging.getLogger(__name__)


class NginxRouter(TrafficRouter):
    """Routes traffic through an nginx it manages (or, ``owns_process=False``, one you run).

    ``apply`` validates the candidate upstream with ``nginx -t`` (a rejected config raises
    :class:`RouterError` and the old one keeps serving), renames it into place, reloads nginx
    gracefully, and returns only once ``/__router/config`` answers the new generation and every
    worker of the old generation has stopped accepting requests (bounded by ``confirm_timeout``;
    on time-out the previous file is restored and :class:`RouterError` raised). Thread-safe.
    """

    def __init__(
        self,
        listen_port: int = 0,
        *,
        workdir: str | os.PathLike[str] | None = None,
        nginx_binary: str | None = None,
        worker_shutdown_timeout: str | float = "10s",
        owns_process: bool = True,
        listen_host: str = "127.0.0.1",
        worker_processes: int = 1,
        max_fails: int = 1,
        fail_timeout: str | float = "5s",
        upstream_keepalive: int = 32,
        proxy_timeout: str | float = "30s",
        confirm_timeout: float = 10.0,
        main_config: str | os.PathLike[str] | None = None,
        log_flush: str | float = "200ms",
        max_log_bytes: int = 64 * 1024 * 1024,
        listen_tls: TlsListen | None = None,
        server_snippet: bool = False,
    ) -> None:
        binary = nginx_binary or shutil.which("nginx") or "/usr/sbin/nginx"
        found = ConfigProblems()  # every problem of the options, before anything is made
        if not os.access(binary, os.X_OK):
            found.add("nginx_binary", f"{binary!r} is not an executable nginx; install it")
        found.positive("confirm_timeout", confirm_timeout)
        found.positive("worker_processes", worker_processes)
        found.positive("upstream_keepalive", upstream_keepalive)
        found.positive("max_fails", max_fails, allow_zero=True)
        found.positive("max_log_bytes", max_log_bytes)
        if not owns_process and not listen_port:
            found.add("listen_port", "is required when owns_process=False")
        with found.check():
            listen_host = check_listen_host(listen_host)
        times = durations(found, worker_shutdown_timeout=worker_shutdown_timeout,
                          fail_timeout=fail_timeout, proxy_timeout=proxy_timeout,
                          log_flush=log_flush)  # fmt: skip
        with found.check():
            if workdir is not None:  # refused before anything is made or written
                conf_value("workdir", Path(workdir).resolve())
        found.raise_any()
        self.nginx_binary, self.owns_process = binary, owns_process
        self.listen_host, self.listen_port = listen_host, int(listen_port)
        self.worker_shutdown_timeout = times["worker_shutdown_timeout"]
        self.log_flush = times["log_flush"]
        self.fail_timeout, self.proxy_timeout = times["fail_timeout"], times["proxy_timeout"]
        self.worker_processes, self.max_fails = int(worker_processes), int(max_fails)
        self.upstream_keepalive, self.max_log_bytes = int(upstream_keepalive), int(max_log_bytes)
        self.confirm_timeout = float(confirm_timeout)
        self.main_config = None if main_config is None else str(main_config)
        self.listen_tls, self.server_snippet = listen_tls, server_snippet
        if workdir is None:
            self.workdir = Path(tempfile.mkdtemp(prefix="crackseg-nginx-"))
        else:
            self.workdir = Path(workdir).resolve()
            self.workdir.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            # Workers run as an unprivileged user and must reach their temp folders (request
            # bodies over 16 KiB go there); the workdir's parents may not let them through.
            self.temp_dir = Path(tempfile.mkdtemp(prefix="crackseg-nginx-tmp-"))
            self.temp_dir.chmod(0o755)
            self._owns_temp_dir = True
        else:
            self.temp_dir = self.workdir / "tmp"
            self.temp_dir.mkdir(exist_ok=True)
            self._owns_temp_dir = False
        # Made by mkdtemp under TMPDIR: refused now, before nginx is configured or started.
        conf_value("TMPDIR" if self._owns_temp_dir else "workdir", self.temp_dir)
        conf_value("workdir", self.workdir)
        self.upstream_file = self.workdir / "upstream.conf"
        self._lock = threading.Lock()
        self._current: list[Backend] = []
        self._generation = 0
        self._attempts = 0
        self._process: subprocess.Popen[bytes] | None = None
        self._adopted: int | None = None  # pid of a master another program started
        self._finalizer: weakref.finalize[[int, signal.Signals], NginxRouter] | None = None
        self._closed = False
        self.access_log = self.workdir / "access.log"
        self._load_token = load_token(self.workdir / "load.token")
        self._reader = AccessLogReader(
            self.access_log, max_bytes=self.max_log_bytes, reopen=self._reopen_logs
        )
        self._write_locations()
        existing = file_generation(self.upstream_file)
        running = adoptable_master(self.workdir) if owns_process else None
        if running is not None:
            self._adopt(*running)
        elif owns_process or existing is None:
            atomic_write(self.upstream_file, self._render_upstream(0, []))
        if not owns_process and existing is not None:
            # An nginx we do not own may serve this file already: continue its numbering so
            # that its current generation can never pass for the confirmation of ours.
            self._attempts = self._generation = existing
        if owns_process and running is None:
            try:
                self._start()
            except BaseException:
                self.close()
                raise
        self._reader.follow()

    # -- public API -------------------------------------------------------------------------
    @property
    def public_url(self) -> str:
        return f"http://{host_port(self.listen_host, self.listen_port)}"

    @property
    def generation(self) -> int:
        """The generation number of the config last confirmed live (0 = no backends yet)."""
        return self._generation

    @property
    def error_log(self) -> Path:
        return self.workdir / "error.log"

    @property
    def pid(self) -> int | None:
        """The nginx master's pid while this router's nginx (started or adopted) runs."""
        proc, adopted = self._process, self._adopted
        if proc is not None:
            return proc.pid if proc.poll() is None else None
        return adopted if adopted is not None and master_alive(adopted) else None

    @property
    def adopted(self) -> bool:
        """True when this router took over an nginx another program started on its folder."""
        return self._adopted is not None

    @property
    def measures_traffic(self) -> bool:
        return True

    @property
    def supports_backup(self) -> bool:
        return True

    @property
    def logs_requests(self) -> bool:
        return True

    @property
    def load_header(self) -> tuple[str, str]:
        """Marks synthetic load (:func:`~.nginx_log.stratum_map`): this router's own token."""
        return LOAD_HEADER, self._load_token

    def served(self, addresses: Sequence[str], cursor: int) -> tuple[int, list[Served]]:
        """What nginx logged after ``cursor`` (:meth:`~.base.TrafficRouter.served`)."""
        return self._reader.served(addresses, cursor)

    def measure(self, addresses: Sequence[str], since: float) -> TrafficStats:
        """What nginx's access log says of requests to ``addresses`` since ``since`` (Unix
        time): attempts, errors (5xx and upstream failures), latency percentiles. Raises
        :class:`RouterError` when the log cannot be read."""
        return self._reader.measure(addresses, since)

    def current(self) -> list[Backend]:
        with self._lock:
            return list(self._current)

    def apply(self, backends: list[Backend]) -> None:
        """Route to ``backends`` by weight (see the class doc); raises :class:`RouterError`."""
        validate(backends)
        with self._lock:
            if self._closed:
                raise RouterError("the nginx router is closed")
            # Generations only grow, also across failed attempts, so a late answer from an
            # abandoned attempt can never pass for the confirmation of a later one.
            self._attempts += 1
            generation = self._attempts
            candidate = self.workdir / "upstream.conf.candidate"
            atomic_write(candidate, self._render_upstream(generation, backends))
            try:
                self._test_config(candidate)
            except RouterError:
                candidate.unlink(missing_ok=True)
                raise
            previous = self.upstream_file.read_text()
            old_workers = worker_pids(self._master_pid())
            os.replace(candidate, self.upstream_file)
            try:
                self._reload()
                self._confirm(generation, old_workers)
            except RouterError:
                atomic_write(self.upstream_file, previous)
                try:
                    self._reload()
                except RouterError as exc:  # the original error matters more
                    logger.error("restoring the previous nginx config failed: %s", exc)
                raise
            self._generation = generation
            self._current = list(backends)
            logger.info("nginx generation %d live: %s", generation, describe(backends))

    def sample_versions(
        self, path: str = "/version", count: int = 20, header: str = "X-Version"
    ) -> Counter[str]:
        """Send ``count`` GETs through nginx, each on a fresh connection, and count the
        ``header`` values (``"HTTP <status>"`` or ``"error"`` for failures): a cheap check that
        traffic reaches the version you expect after :meth:`apply`."""
        return sample_versions(self.listen_host, self.listen_port, path, count, header)

    def close(self) -> None:
        """Stop the nginx this router started or adopted (graceful quit, then kill); in
        include mode, leave the host's nginx answering 503 here (:meth:`_retire`). Idempotent."""
        with self._lock:
            if not self._closed and not self.owns_process:
                self._retire()
            self._closed = True
            proc, self._process = self._process, None
            adopted, self._adopted = self._adopted, None
        if self._finalizer is not None:
            self._finalizer.detach()
        if adopted is not None:
            stop_master(adopted, seconds(self.worker_shutdown_timeout) + 5.0)
        self._reader.close()
        if proc is not None:
            if proc.poll() is None:
                signal_group(proc.pid, signal.SIGQUIT)
                try:
                    proc.wait(timeout=seconds(self.worker_shutdown_timeout) + 5.0)
                except subprocess.TimeoutExpired:
                    signal_group(proc.pid, signal.SIGKILL)
                    proc.wait()
            signal_group(proc.pid, signal.SIGKILL)  # stray workers of a master that died
        if self._owns_temp_dir:
            shutil.rmtree(self.temp_dir, ignore_errors=True)

    def __enter__(self) -> NginxRouter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- config files -----------------------------------------------------------------------
    def _render_main(self, upstream_file: Path) -> str:
        temp = {
            f"{kind}_temp": conf_value("workdir", self.temp_dir / kind)
            for kind in ("body", "proxy", "fastcgi", "uwsgi", "scgi")
        }
        return MAIN_CONF.format(
            pid_file=conf_value("workdir", self.workdir / "nginx.pid"),
            error_log=conf_value("workdir", self.error_log),
            locations_file=conf_value("workdir", self.workdir / "locations.conf"),
            worker_processes=self.worker_processes,
            worker_shutdown_timeout=self.worker_shutdown_timeout,
            upstream_file=conf_value("workdir", upstream_file),
            listen=listen_address(self.listen_host, self.listen_port),
            tls=render_tls(self.listen_tls, self.listen_host, 8),
            **temp,
        )

    def _write_locations(self) -> None:
        text = LOCATIONS_CONF.format(
            config_path=CONFIG_PATH,
            upstream=UPSTREAM_NAME,
            proxy_timeout=self.proxy_timeout,
            access_log=conf_value("workdir", self.access_log),
            log_format_name=LOG_FORMAT_NAME,
            log_flush=self.log_flush,
        )
        atomic_write(self.workdir / "locations.conf", text)
        if self.server_snippet:
            server = SERVER_CONF.format(
                listen=listen_address(self.listen_host, self.listen_port),
                tls=render_tls(self.listen_tls, self.listen_host, 4),
                locations_file=conf_value("workdir", self.workdir / "locations.conf"),
            )
            atomic_write(self.workdir / "server.conf", server)

    def _render_upstream(self, generation: int, backends: list[Backend]) -> str:
        text = render_upstream(
            generation,
            backends,
            max_fails=self.max_fails,
            fail_timeout=self.fail_timeout,
            keepalive=self.upstream_keepalive,
        )
        # The log format's stratum variable lives beside it, in the http context.
        return text + stratum_map(self._load_token) + "\n"

    def _retire(self) -> None:
        """Include mode's close: the host's nginx keeps including our files, so they become
        an upstream with no backend and a ``location /`` answering 503 (:data:`CLOSED_LOCATIONS`),
        checked with ``nginx -t`` of ``main_config``, reloaded, and confirmed. A failure is
        logged: the host's nginx then keeps its last valid configuration."""
        self._attempts += 1
        files = {
            self.upstream_file: self._render_upstream(self._attempts, []),
            self.workdir / "locations.conf": CLOSED_LOCATIONS.format(config_path=CONFIG_PATH),
        }
        try:
            if self.main_config is not None:
                test_host_config(self.nginx_binary, self.main_config, files)
            old_workers = worker_pids(self._master_pid())
            for path, text in files.items():
                atomic_write(path, text)
            self._reload()
            self._confirm(self._attempts, old_workers)
        except (RouterError, OSError) as exc:
            logger.error("the host's nginx could not be turned away from %s: %s", self.workdir, exc)
            return
        self._generation, self._current = self._attempts, []
        logger.info("router closed: the host's nginx answers 503 (generation %d)", self._attempts)

    def _test_config(self, candidate: Path) -> None:
        if not self.owns_process and self.main_config is not None:
            # The host's nginx: its own configuration decides what is valid.
            files = {self.upstream_file: candidate.read_text()}
            return test_host_config(self.nginx_binary, self.main_config, files)
        test_conf = self.workdir / "nginx.test.conf"
        atomic_write(test_conf, self._render_main(candidate))
        nginx_test([self.nginx_binary, "-t", "-q", "-p", str(self.workdir), "-c", str(test_conf)])

    def _reopen_logs(self) -> None:
        master = self._master_pid()
        if self.owns_process and master is not None:
            os.kill(master, signal.SIGUSR1)
        elif not self.owns_process:
            try:
                signal_host(self.nginx_binary, self.main_config, "reopen")
            except RouterError as exc:  # it keeps writing to the rotated file: no loss
                logger.warning("%s", exc)

    # -- process control --------------------------------------------------------------------
    def _adopt(self, pid: int, port: int) -> None:
        if self.listen_port and self.listen_port != port:
            raise RouterError(
                f"an nginx (pid {pid}) already serves {self.workdir} on port {port}; "
                f"use listen_port={port} or another workdir"
            )
        self.listen_port = port
        self._adopted = pid
        self._current = [b for b in file_backends(self.upstream_file) if b.address != "127.0.0.1:9"]
        self._attempts = self._generation = file_generation(self.upstream_file) or 0
        self._reader.skip_to_end()
        logger.info("adopted nginx (pid %d) serving %s", pid, self.public_url)

    def _start(self) -> None:
        auto_port = self.listen_port == 0
        for attempt in range(3):
            if auto_port:
                self.listen_port = free_port(self.listen_host)
            main_conf = self.workdir / "nginx.conf"
            atomic_write(main_conf, self._render_main(self.upstream_file))
            self._test_config(self.upstream_file)
            out = open(self.workdir / "nginx.out", "ab")  # noqa: SIM115 - the child keeps it
            try:
                self._process = subprocess.Popen(
                    [self.nginx_binary, "-p", str(self.workdir), "-c", str(main_conf)],
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            finally:
                out.close()
            try:
                self._confirm(0, [])
                logger.info("nginx (pid %d) serving %s", self._process.pid, self.public_url)
                # A router dropped without close() still stops its nginx at interpreter exit.
                self._finalizer = weakref.finalize(
                    self, signal_group, self._process.pid, signal.SIGQUIT
                )
                return
            except RouterError as exc:
                failed, self._process = self._process, None
                if failed.poll() is None:
                    signal_group(failed.pid, signal.SIGKILL)
                failed.wait()
                if not auto_port or attempt == 2:
                    raise RouterError(
                        f"nginx did not start: {exc}; {log_tail(self.error_log)}"
                    ) from exc
                logger.warning("nginx did not start on port %d, retrying", self.listen_port)

    def _reload(self) -> None:
        if self.owns_process:
            pid = self.pid
            if pid is None:
                raise RouterError(f"nginx is not running; {log_tail(self.error_log)}")
            os.kill(pid, signal.SIGHUP)
        else:
            signal_host(self.nginx_binary, self.main_config, "reload")

    def _master_pid(self) -> int | None:
        return self.pid if self.owns_process else read_pid(pid_file_of(self.main_config))

    def _confirm(self, generation: int, old_workers: list[int]) -> None:
        """Poll until a fresh connection is served by ``generation`` and no old worker accepts."""
        deadline = time.monotonic() + self.confirm_timeout
        seen: int | str | None = None
        while True:
            if self.owns_process and self.pid is None:
                raise RouterError(f"nginx exited; {log_tail(self.error_log)}")
            seen = served_generation(self.listen_host, self.listen_port)
            if seen == generation and not any(map(still_accepting, old_workers)):
                return
            if time.monotonic() >= deadline:
                raise RouterError(
                    f"nginx did not confirm generation {generation} within "
                    f"{self.confirm_timeout:.1f}s (last answer: {seen!r})"
                )
            time.sleep(0.01)
