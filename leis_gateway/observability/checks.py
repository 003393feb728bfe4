"""`leis-gateway config check`: can these settings serve? Every problem, said plainly.

Read-only as far as it can be: it opens the audit store (which applies pending migrations, as
`serve` would) only when the store already exists; it creates no key, database or certificate.
"""
from __future__ import annotations

import datetime as dt
import errno
import ipaddress
import socket
import ssl
from dataclasses import dataclass, field, fields
from pathlib import Path
from urllib.parse import urlsplit

from ..config import SR_PATH, INTERNAL_SR_PATH, Settings

SECRET_URL_FIELDS = ("audit_url", "prime_hub_url")


@dataclass
class CheckReport:
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # worth knowing, not in the way of serving
    passed: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def redact_url(url: str | None) -> str | None:
    """A URL without its password (user names stay: they say which account)."""
    if not url:
        return url
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return parts._replace(netloc=netloc).geturl()


def effective_settings(settings: Settings) -> list[tuple[str, str]]:
    """(name, value) of every setting and the locations derived from them, secrets redacted."""
    rows = []
    for f in fields(settings):
        value = getattr(settings, f.name)
        if f.name in SECRET_URL_FIELDS:
            value = redact_url(value)
        if isinstance(value, tuple):
            value = ",".join(value)
        rows.append((f.name, "" if value is None else str(value)))
    rows += [
        ("(endpoint)", settings.endpoint_url),
        ("(audit database)", redact_url(settings.audit_database_url) or ""),
        ("(audit key file)", str(settings.audit_key_path)),
        ("(client CA)", str(settings.client_ca_file)),
        ("(source databases)", str(settings.home / "sources") if not settings.prime_hub_url else "(PRIME hub)"),
    ]
    return rows


def check(settings: Settings, *, bind_ports: bool = True) -> CheckReport:
    report = CheckReport()
    for step in (_values, _pki, _crl, _registry, _sources, _audit, _urls):
        try:
            step(settings, report)
        except Exception as exc:  # a check that breaks is itself a finding, not a crash
            report.problems.append(f"{step.__name__.strip('_')}: the check failed ({type(exc).__name__}: {exc})")
    if bind_ports:
        _ports(settings, report)
    return report


# --- the checks --------------------------------------------------------------------------------


def _values(s: Settings, r: CheckReport) -> None:
    if s.workers < 1:
        r.problems.append(f"workers is {s.workers}: at least 1")
    if s.log_format not in ("text", "json"):
        r.problems.append(f"log_format is {s.log_format!r}: text or json")
    if s.log_level not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
        r.problems.append(f"log_level is {s.log_level!r}: DEBUG, INFO, WARNING, ERROR or CRITICAL")
    for name in ("default_timeout_seconds", "max_timeout_seconds", "partner_timeout_seconds"):
        if getattr(s, name) <= 0:
            r.problems.append(f"{name} is {getattr(s, name)}: it must be positive")
    if s.default_timeout_seconds > s.max_timeout_seconds:
        r.problems.append(f"default_timeout_seconds ({s.default_timeout_seconds}) is above "
                          f"max_timeout_seconds ({s.max_timeout_seconds})")
    for name in ("server_threads", "source_workers", "source_concurrency", "max_body_bytes", "prime_hub_pool"):
        if getattr(s, name) < 1:
            r.problems.append(f"{name} is {getattr(s, name)}: at least 1")
    for proxy in s.trusted_proxies:
        try:
            ipaddress.ip_network(proxy, strict=False)
        except ValueError:
            r.problems.append(f"trusted_proxies: {proxy!r} is not an address or network")
    if s.metrics_port is not None and s.metrics_host not in ("127.0.0.1", "::1", "localhost"):
        r.notes.append(f"the plain-HTTP metrics port listens on {s.metrics_host}, not loopback: "
                       "anyone who can reach it can scrape")


def _pki(s: Settings, r: CheckReport) -> None:
    cert, key, ca = s.pki_dir / "server.crt", s.pki_dir / "server.key", s.client_ca_file
    missing = [str(p) for p in (cert, key, ca) if not p.is_file()]
    if missing:
        r.problems.append(f"PKI files missing: {', '.join(missing)} (run `leis-gateway init` for the demo PKI)")
        return
    from ..security.tls import server_ssl_context

    try:
        server_ssl_context(cert=cert, key=key, ca=ca)
    except (ssl.SSLError, OSError, ValueError) as exc:
        r.problems.append(f"the server certificate {cert}, its key {key} or the client CA {ca} cannot be used "
                          f"for TLS: {exc}")
        return
    from cryptography import x509

    certificate = x509.load_pem_x509_certificate(cert.read_bytes())
    now = dt.datetime.now(dt.timezone.utc)
    if certificate.not_valid_after_utc < now:
        r.problems.append(f"the server certificate {cert} expired on {certificate.not_valid_after_utc:%Y-%m-%d}")
    elif certificate.not_valid_after_utc < now + dt.timedelta(days=30):
        r.notes.append(f"the server certificate {cert} expires on {certificate.not_valid_after_utc:%Y-%m-%d}")
    r.passed.append(f"PKI: {cert}, {key}, client CA {ca}")


def _crl(s: Settings, r: CheckReport) -> None:
    if s.crl_path is None:
        r.notes.append("no CRL configured (crl_path): revoked client certificates are not refused")
        return
    from cryptography import x509

    try:
        raw = s.crl_path.read_bytes()
    except OSError as exc:
        r.problems.append(f"CRL {s.crl_path} cannot be read ({exc.strerror or exc})")
        return
    try:
        x509.load_pem_x509_crl(raw) if b"-----BEGIN" in raw else x509.load_der_x509_crl(raw)
    except ValueError:
        r.problems.append(f"CRL {s.crl_path} is not a PEM or DER certificate revocation list")
        return
    r.passed.append(f"CRL: {s.crl_path}")


def _registry(s: Settings, r: CheckReport) -> None:
    from ..policy.agreements import RegistryError, load_registry

    try:
        snapshot = load_registry(s.registry_path)
    except RegistryError as exc:
        r.problems.append(f"agreements registry {s.registry_path}: {exc}")
        return
    except OSError as exc:
        r.problems.append(f"agreements registry {s.registry_path} cannot be read ({exc.strerror or exc})")
        return
    r.passed.append(f"registry: {s.registry_path}, version {snapshot.version}, {len(snapshot.all())} agreements")


def _sources(s: Settings, r: CheckReport) -> None:
    if s.prime_hub_url:
        problem = _url_problem(s.prime_hub_url, schemes=("http", "https"))
        if problem:
            r.problems.append(f"prime_hub_url {redact_url(s.prime_hub_url)!r}: {problem}")
        if s.prime_hub_ca is not None and not s.prime_hub_ca.is_file():
            r.problems.append(f"prime_hub_ca {s.prime_hub_ca} does not exist")
        if not problem:
            r.passed.append(f"sources: the PRIME hub at {redact_url(s.prime_hub_url)} (not contacted)")
        if set(s.prime_hub_systems) >= {"TECS", "EID", "OBIM"}:
            return
    from ..sources.base import source_paths

    missing = [str(p) for p in source_paths(s.home).values() if not p.is_file()]
    if missing:
        r.problems.append(f"source databases missing: {', '.join(missing)} (run `leis-gateway init`)")
    else:
        r.passed.append(f"sources: databases under {s.home / 'sources'}")


def _audit(s: Settings, r: CheckReport) -> None:
    from ..audit import AuditLog
    from ..audit.store import sqlite_path
    from ..audit.types import AuditUnavailable

    url = s.audit_database_url
    try:
        path = sqlite_path(url)
    except ValueError as exc:
        r.problems.append(f"audit database {redact_url(url)}: {exc}")
        return
    except Exception as exc:  # not a database URL at all
        r.problems.append(f"audit database {redact_url(url)!r} is not a database URL ({type(exc).__name__})")
        return
    if not s.audit_key_path.is_file():
        r.notes.append(f"audit key {s.audit_key_path} does not exist yet: the first start creates it "
                       "(an existing audit log written with another key could not be read)")
    if path is not None and not path.exists():
        parent = path.parent
        while not parent.exists():
            parent = parent.parent
        if not _writable(parent):
            r.problems.append(f"audit database {path} does not exist and {parent} is not writable")
        else:
            r.notes.append(f"audit database {path} does not exist yet: the first start creates it")
        return
    key = s.audit_key_path.read_bytes() if s.audit_key_path.is_file() else bytes(32)
    try:
        log = AuditLog.open(url, key, "config-check")
    except AuditUnavailable as exc:
        r.problems.append(f"audit database {redact_url(url)} is unreachable: {exc}")
        return
    try:
        if not log.ready():
            r.problems.append(f"audit database {redact_url(url)} answers but holds no audit chain")
        else:
            r.passed.append(f"audit: {redact_url(url)}")
    finally:
        log.close()


def _writable(directory: Path) -> bool:
    import os

    return os.access(directory, os.W_OK | os.X_OK)


def _urls(s: Settings, r: CheckReport) -> None:
    for name, path in (("public_url", SR_PATH), ("internal_public_url", INTERNAL_SR_PATH)):
        url = getattr(s, name)
        if url is None:
            continue
        problem = _url_problem(url, schemes=("https",))
        if problem:
            r.problems.append(f"{name} {url!r}: {problem}")
        elif not urlsplit(url).path.rstrip("/").endswith(path):
            r.notes.append(f"{name} {url!r} does not end in {path}: clients will post to that address")
        else:
            r.passed.append(f"{name}: {url}")


def _url_problem(url: str, schemes: tuple[str, ...]) -> str | None:
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        return f"malformed ({exc})"
    if parts.scheme not in schemes:
        return f"the scheme must be {' or '.join(schemes)}"
    if not parts.hostname:
        return "no host"
    if parts.query or parts.fragment:
        return "a query or fragment does not belong in it"
    del port
    return None


def _ports(s: Settings, r: CheckReport) -> None:
    wanted = [("port", s.host, s.port)]
    if s.internal_port is not None:
        wanted.append(("internal_port", s.internal_host or s.host, s.internal_port))
    if s.metrics_port is not None:
        wanted.append(("metrics_port", s.metrics_host, s.metrics_port))
    seen: dict[tuple[str, int], str] = {}
    for name, host, port in wanted:
        if port and (host, port) in seen:
            r.problems.append(f"{name} {port} is also {seen[(host, port)]}")
            continue
        seen[(host, port)] = name
        problem = port_problem(host, port)
        if problem:
            r.problems.append(f"{name}: {host}:{port} {problem}")
        else:
            r.passed.append(f"{name}: {host}:{port} is free")


def port_problem(host: str, port: int) -> str | None:
    """Why (host, port) cannot be listened on now, or None."""
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
    except socket.gaierror as exc:
        return f"cannot be resolved ({exc.strerror})"
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return "is in use (is the gateway already running?)"
            if exc.errno == errno.EACCES:
                return "needs privileges to bind"
            return f"cannot be bound ({exc.strerror or exc})"
    return None


def print_report(settings: Settings, report: CheckReport, out) -> None:
    out.write("effective settings (file, then environment, then flags; secrets redacted):\n")
    rows = effective_settings(settings)
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        out.write(f"  {name.ljust(width)}  {value}\n")
    out.write("\n")
    for line in report.passed:
        out.write(f"ok       {line}\n")
    for line in report.notes:
        out.write(f"note     {line}\n")
    for line in report.problems:
        out.write(f"PROBLEM  {line}\n")
    out.write(("configuration ok\n" if report.ok else f"{len(report.problems)} problem(s)\n"))
