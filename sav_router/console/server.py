"""Run the console under uvicorn: loopback by default, quiet logs (never a request text)."""

from __future__ import annotations

import ipaddress
import logging
import sys
from pathlib import Path
from typing import Any


def _loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def run_console(
    source: Any,
    *,
    state_dir: Path,
    users_file: Path,
    host: str = "127.0.0.1",
    port: int = 8070,
    ssl_certfile: str | None = None,
    ssl_keyfile: str | None = None,
    secure_cookies: bool = False,
    access_log: bool = False,
    allowed_hosts: tuple[str, ...] = (),
    lease_seconds: float | None = None,
) -> int:
    import uvicorn

    from sav_router.console.app import ConsoleSettings, create_app

    from sav_router.console.security import LOOPBACK_HOSTS

    hosts = tuple(dict.fromkeys([*LOOPBACK_HOSTS, *((host,) if host not in ("0.0.0.0", "::") else ()), *allowed_hosts]))
    settings = ConsoleSettings(
        state_dir=state_dir, users_file=users_file, secure_cookies=secure_cookies or bool(ssl_certfile), allowed_hosts=hosts, tls=bool(ssl_certfile),
    )
    if lease_seconds:
        settings.lease_seconds = lease_seconds
    app = create_app(source, settings)
    scheme = "https" if ssl_certfile else "http"
    if not _loopback(host) and not ssl_certfile and not secure_cookies:
        print(f"warning: serving {host} over plain HTTP: passwords and cookies cross the network in clear (use --ssl-certfile/--ssl-keyfile or a TLS proxy with --secure-cookies)", file=sys.stderr)
    print(f"sav-router console on {scheme}://{host}:{port}/ ({source.describe()}); Ctrl-C stops it", file=sys.stderr, flush=True)
    logging.getLogger("sav_router").setLevel(logging.INFO)
    uvicorn.run(app, host=host, port=port, access_log=access_log, log_level="warning", ssl_certfile=ssl_certfile, ssl_keyfile=ssl_keyfile, server_header=False)
    return 0
