"""How a store speaks to a database server: the driver, connection bounds, and what may be printed.

A team's store is a PostgreSQL database (`--store postgresql://user:pw@host/db`).
This module is what differs from a SQLite file:

* the driver: a plain ``postgresql://`` (or ``postgres://``) URL gets psycopg 3,
  the driver `aigcbench[team]` installs, not SQLAlchemy's default psycopg2;
* bounded waits: a host that does not answer fails after `CONNECT_TIMEOUT_S`,
  and a connection whose peer vanished is dropped by the kernel, so a command
  never hangs on a dead network;
* reachability is checked when the store is opened, so an unreachable host,
  a wrong password or an unknown database is a one-line `UserError` naming
  host and port, decided before anything is measured;
* the password never leaves: printed URLs mask it, driver messages are
  scrubbed of it, and the spool names a store by its URL without it.
"""

from __future__ import annotations

import re
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from .errors import UserError

# A plain postgresql:// URL means SQLAlchemy's default driver, psycopg2, which is not
# installed; `aigcbench[team]` ships psycopg 3. Explicit `+driver` URLs are kept as given.
_DEFAULT_DRIVERS = {"postgresql": "postgresql+psycopg", "postgres": "postgresql+psycopg"}
# psycopg connection defaults (libpq parameters; the URL's own query wins): a blackholed
# host fails after CONNECT_TIMEOUT_S instead of hanging, and a connection whose peer vanished
# mid-transaction is given up by the kernel (keepalives, unacknowledged data) instead of
# waiting out TCP's retransmissions, so a store write fails in time to be spooled.
CONNECT_TIMEOUT_S = 10
_PSYCOPG_DEFAULTS = {
    "connect_timeout": CONNECT_TIMEOUT_S, "keepalives": 1, "keepalives_idle": 30, "keepalives_interval": 10,
    "keepalives_count": 3, "tcp_user_timeout": 60_000,
}
# What a server database raises when it stops answering (not when it refuses what was sent).
UNANSWERED = (sa.exc.OperationalError, sa.exc.InterfaceError)


def with_default_driver(url: sa.URL) -> sa.URL:
    """`url` with psycopg 3 as its driver when it names PostgreSQL without one."""
    return url.set(drivername=_DEFAULT_DRIVERS.get(url.drivername, url.drivername))


def server_engine(url: sa.URL, display: str) -> Engine:
    """An engine on the server database `url`, connected once (the pool keeps that connection).

    Raises `UserError` ("cannot connect to HOST:PORT: why") when the server
    cannot be reached, refuses the password or has no such database.
    """
    try:
        engine = sa.create_engine(url, pool_pre_ping=True)
    except (sa.exc.NoSuchModuleError, ImportError) as exc:
        raise UserError(f"store {display}: {exc} (aigcbench[team] installs psycopg 3: use postgresql:// "
                        "or postgresql+psycopg://)") from None
    except sa.exc.ArgumentError as exc:
        raise UserError(f"store {display}: {scrubbed(str(exc), url)}") from None
    _psycopg_defaults(engine)
    try:
        with engine.connect():
            pass
    except sa.exc.DBAPIError as exc:
        engine.dispose()
        raise UserError(f"store {display}: cannot connect to {endpoint(url)}: {reason(exc, url)}") from None
    return engine


def masked(url: sa.URL) -> str:
    """`url` as text, safe to print: its password (in the URL or its query) shown as ***."""
    return re.sub(r"([?&]password=)[^&]*", r"\1***", url.render_as_string(hide_password=True))


def masked_text(text: str) -> str:
    """A text that may hold a URL SQLAlchemy could not parse, with any ``user:password@`` masked."""
    text = re.sub(r"(://[^/:@\s]*:)[^@\s]*@", r"\1***@", text)
    return re.sub(r"(password=)[^&\s]*", r"\1***", text)


def scrubbed(text: str, url: sa.URL) -> str:
    """`text` with `url`'s password, wherever it appears, replaced by ***."""
    for secret in (url.password, url.query.get("password")):
        if isinstance(secret, str) and secret:
            text = text.replace(secret, "***")
    return text


def reason(exc: sa.exc.DBAPIError, url: sa.URL) -> str:
    """The driver's own words for `exc`, on one line, without SQLAlchemy's SQL echo or the password.

    libpq repeats the server address we already name ('connection failed:
    connection to server at "h", port 5432 failed: FATAL:  ...'): that
    preamble is dropped, leaving 'password authentication failed for user "u"'.
    """
    lines = str(exc.orig if exc.orig is not None else exc).splitlines()
    text = "; ".join(" ".join(line.split()) for line in lines if line.strip())
    text = re.sub(r'^(connection (failed|is bad): )?(connection to server (at|on) .*? failed: )?(FATAL: )?', "", text, count=1)
    return scrubbed(text, url) or type(exc).__name__


def endpoint(url: sa.URL) -> str:
    """HOST:PORT as the driver will dial it (a Unix socket folder given as ?host=/dir counts as the host)."""
    host = url.host or url.query.get("host") or "localhost"
    port = url.port or url.query.get("port") or (5432 if url.get_backend_name() == "postgresql" else None)
    return f"{host}:{port}" if port else str(host)


def _psycopg_defaults(engine: Engine) -> None:
    """Give psycopg connections `_PSYCOPG_DEFAULTS` where the URL's query does not set them."""
    if engine.dialect.driver != "psycopg":
        return
    defaults = dict(_PSYCOPG_DEFAULTS)
    if engine.dialect.loaded_dbapi.pq.version() < 120000:  # libpq learnt tcp_user_timeout in 12
        del defaults["tcp_user_timeout"]

    @sa.event.listens_for(engine, "do_connect")
    def _defaults(_dialect: Any, _record: Any, _cargs: Any, cparams: dict[str, Any]) -> None:
        for key, value in defaults.items():
            cparams.setdefault(key, value)


def spool_key(url: sa.URL) -> str:
    """The store's identity for its spool file: the URL without its password (never written anywhere)."""
    # URL.create, not url.set: set(password=None) means "leave the password as it is".
    bare = sa.URL.create(url.drivername, url.username, None, url.host, url.port, url.database,
                         {key: value for key, value in url.query.items() if key != "password"})
    return bare.render_as_string(hide_password=False)
