"""Settings: where the state lives and how the gateway serves, from the environment.

Everything generated lives under `$LEIS_HOME` (default `./var`). Every setting has an
environment variable so a container or a test can point the gateway anywhere.
"""
from __future__ import annotations

import os
import tomllib
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
SR_PATH = "/lexs/sr/3.1"
INTERNAL_SR_PATH = "/internal/lexs/sr/3.1"  # the analysts' (AFI) endpoint, on its own port (twoway/)
GATEWAY_CLIENT_ID = "gateway"  # demo PKI: pki/agencies/gateway.crt|key, the gateway's client certificate


@dataclass(frozen=True)
class Settings:
    home: Path = Path("var")
    host: str = "127.0.0.1"
    port: int = 8443
    public_url: str | None = None  # the address written into the WSDL's soap:address
    registry_path: Path = PROJECT_ROOT / "fixtures" / "agreements.json"
    audit_url: str | None = None  # default: SQLite in $LEIS_HOME
    max_body_bytes: int = 1_000_000
    default_timeout_seconds: float = 5.0
    max_timeout_seconds: float = 20.0
    item_ttl_seconds: int = 24 * 3600  # how long a search's item and attachment ids stay usable
    server_threads: int = 16
    require_signature: bool = True  # requests must carry a WS-Security signature (DESIGN.md)
    demo_people: int = 3000
    # --- sources and the fan-out (federation.py, sources/remote.py, docs/performance.md) -------
    prime_hub_url: str | None = None  # the PRIME hub as an HTTP service; None: the local databases
    prime_hub_systems: tuple[str, ...] = ("TECS", "EID", "OBIM")  # the systems asked at the hub
    prime_hub_pool: int = 16  # keep-alive connections to the hub, at most
    prime_hub_ca: Path | None = None  # CA for an https hub URL
    source_workers: int = 64  # fan-out worker threads, at most (idle ones exit)
    source_concurrency: int = 24  # calls outstanding to any one source, at most (a hung source's share)
    source_idle_seconds: float = 2.0  # a fan-out worker with nothing to do for this long exits
    wsdl_path: Path = field(default_factory=lambda: PROJECT_ROOT / "wsdl" / "lexs-sr.wsdl")
    # --- client identity (guard/identity.py, docs/nginx.md) ----------------------------------
    client_ca_path: Path | None = None  # CA certificate(s) clients must chain to; default $LEIS_HOME/pki/ca.crt
    crl_path: Path | None = None  # a PEM/DER CRL, reloaded when it changes; none: no revocation check
    trusted_proxies: tuple[str, ...] = ()  # addresses/networks whose forwarded certificate header is trusted
    client_cert_header: str = "X-SSL-Client-Cert"  # URL-encoded PEM (nginx $ssl_client_escaped_cert)
    # --- two-way sharing: the internal analysts' endpoint and the partners (twoway/) -----------
    internal_host: str | None = None  # default: `host`
    internal_port: int | None = None  # None: no internal endpoint is served
    internal_public_url: str | None = None  # the address written into the internal WSDL
    partner_timeout_seconds: float = 10.0  # the most any one partner is given (the requester's deadline is the other bound)
    partner_max_response_bytes: int = 16_000_000
    # --- operations (observability/, workers.py, docs/operations.md) ---------------------------
    workers: int = 1  # serving processes; more than 1: a pre-fork supervisor (workers.py)
    pin_workers: bool = True  # several workers: each runs on one CPU of its own (workers.py, pin_to_cpu)
    metrics_port: int | None = None  # also serve /metrics in plain HTTP here (for a local Prometheus)
    metrics_host: str = "127.0.0.1"  # where the plain-HTTP metrics port listens (keep it loopback)
    endpoint_metrics: bool = True  # /metrics on the endpoint port too (mutual TLS: any certificate of the CA)
    log_format: str = "text"  # text | json (one JSON object per line)
    log_level: str = "INFO"

    # --- derived locations -----------------------------------------------------------------
    @property
    def pki_dir(self) -> Path:
        return self.home / "pki"

    @property
    def client_ca_file(self) -> Path:
        return self.client_ca_path or self.pki_dir / "ca.crt"

    @property
    def audit_database_url(self) -> str:
        return self.audit_url or f"sqlite:///{(self.home / 'audit.db').resolve()}"

    @property
    def audit_key_path(self) -> Path:
        return self.home / "audit.key"

    @property
    def token_key_path(self) -> Path:
        return self.home / "token.key"

    @property
    def partner_client_cert(self) -> Path:
        return self.pki_dir / "agencies" / f"{GATEWAY_CLIENT_ID}.crt"

    @property
    def partner_client_key(self) -> Path:
        return self.pki_dir / "agencies" / f"{GATEWAY_CLIENT_ID}.key"

    @property
    def internal_endpoint_url(self) -> str:
        host = self.internal_host or self.host
        return self.internal_public_url or f"https://{host}:{self.internal_port}{INTERNAL_SR_PATH}"

    @property
    def endpoint_url(self) -> str:
        return self.public_url or f"https://{self.host}:{self.port}{SR_PATH}"

    def with_(self, **changes: object) -> "Settings":
        return replace(self, **changes)

    @classmethod
    def from_env(cls, environ: os._Environ[str] | dict[str, str] | None = None) -> "Settings":
        env = os.environ if environ is None else environ
        defaults = cls()
        return cls(
            home=Path(env.get("LEIS_HOME", str(defaults.home))),
            host=env.get("LEIS_HOST", defaults.host),
            port=int(env.get("LEIS_PORT", defaults.port)),
            public_url=env.get("LEIS_PUBLIC_URL") or None,
            registry_path=Path(env.get("LEIS_REGISTRY", str(defaults.registry_path))),
            audit_url=env.get("LEIS_AUDIT_URL") or None,
            max_body_bytes=int(env.get("LEIS_MAX_BODY_BYTES", defaults.max_body_bytes)),
            default_timeout_seconds=float(
                env.get("LEIS_DEFAULT_TIMEOUT", defaults.default_timeout_seconds)
            ),
            max_timeout_seconds=float(env.get("LEIS_MAX_TIMEOUT", defaults.max_timeout_seconds)),
            server_threads=int(env.get("LEIS_THREADS", defaults.server_threads)),
            require_signature=_switched_on(env, "LEIS_REQUIRE_SIGNATURE"),
            demo_people=int(env.get("LEIS_DEMO_PEOPLE", defaults.demo_people)),
            prime_hub_url=env.get("LEIS_PRIME_HUB_URL") or None,
            prime_hub_systems=tuple(
                s.strip().upper() for s in env.get("LEIS_PRIME_HUB_SYSTEMS", "TECS,EID,OBIM").split(",") if s.strip()
            ),
            prime_hub_pool=int(env.get("LEIS_PRIME_HUB_POOL", defaults.prime_hub_pool)),
            prime_hub_ca=Path(env["LEIS_PRIME_HUB_CA"]) if env.get("LEIS_PRIME_HUB_CA") else None,
            source_workers=int(env.get("LEIS_SOURCE_WORKERS", defaults.source_workers)),
            source_concurrency=int(env.get("LEIS_SOURCE_CONCURRENCY", defaults.source_concurrency)),
            client_ca_path=Path(env["LEIS_CLIENT_CA"]) if env.get("LEIS_CLIENT_CA") else None,
            crl_path=Path(env["LEIS_CRL"]) if env.get("LEIS_CRL") else None,
            trusted_proxies=tuple(
                p.strip() for p in env.get("LEIS_TRUSTED_PROXIES", "").split(",") if p.strip()
            ),
            client_cert_header=env.get("LEIS_CLIENT_CERT_HEADER") or defaults.client_cert_header,
            internal_host=env.get("LEIS_INTERNAL_HOST") or None,
            internal_port=int(env["LEIS_INTERNAL_PORT"]) if env.get("LEIS_INTERNAL_PORT") else None,
            internal_public_url=env.get("LEIS_INTERNAL_PUBLIC_URL") or None,
            partner_timeout_seconds=float(
                env.get("LEIS_PARTNER_TIMEOUT", defaults.partner_timeout_seconds)
            ),
            partner_max_response_bytes=int(
                env.get("LEIS_PARTNER_MAX_RESPONSE_BYTES", defaults.partner_max_response_bytes)
            ),
            workers=int(env.get("LEIS_WORKERS") or defaults.workers),
            pin_workers=_switched_on(env, "LEIS_PIN_WORKERS"),
            metrics_port=int(env["LEIS_METRICS_PORT"]) if env.get("LEIS_METRICS_PORT") else None,
            metrics_host=env.get("LEIS_METRICS_HOST") or defaults.metrics_host,
            endpoint_metrics=_switched_on(env, "LEIS_ENDPOINT_METRICS"),
            log_format=(env.get("LEIS_LOG_FORMAT") or defaults.log_format).strip().lower(),
            log_level=(env.get("LEIS_LOG_LEVEL") or defaults.log_level).strip().upper(),
        )

    @classmethod
    def load(cls, config_file: str | os.PathLike[str] | None = None,
             environ: os._Environ[str] | dict[str, str] | None = None) -> "Settings":
        """Settings from a TOML file (`config_file`, else $LEIS_CONFIG, else none), then the
        environment over it; command-line flags are the caller's to apply last. Raises ConfigError."""
        env = os.environ if environ is None else environ
        path = config_file or env.get("LEIS_CONFIG") or None
        from_env = cls.from_env(env)
        if path is None:
            return from_env
        values = read_config_file(Path(path))
        defaults = cls()
        merged: dict[str, object] = {}
        for f in fields(cls):
            variable = ENVIRONMENT.get(f.name)
            if variable is not None:
                set_in_env = bool(env.get(variable))
            else:  # a setting without a known variable: the environment set it if it changed it
                set_in_env = getattr(from_env, f.name) != getattr(defaults, f.name)
            if set_in_env:
                merged[f.name] = getattr(from_env, f.name)
            elif f.name in values:
                merged[f.name] = values[f.name]
        return cls(**merged)


# --- configuration files ---------------------------------------------------------------------------

# The environment variable of each setting (Settings.from_env reads them).
ENVIRONMENT: dict[str, str] = {
    "home": "LEIS_HOME", "host": "LEIS_HOST", "port": "LEIS_PORT", "public_url": "LEIS_PUBLIC_URL",
    "registry_path": "LEIS_REGISTRY", "audit_url": "LEIS_AUDIT_URL", "max_body_bytes": "LEIS_MAX_BODY_BYTES",
    "default_timeout_seconds": "LEIS_DEFAULT_TIMEOUT", "max_timeout_seconds": "LEIS_MAX_TIMEOUT",
    "server_threads": "LEIS_THREADS", "require_signature": "LEIS_REQUIRE_SIGNATURE",
    "demo_people": "LEIS_DEMO_PEOPLE", "prime_hub_url": "LEIS_PRIME_HUB_URL",
    "prime_hub_systems": "LEIS_PRIME_HUB_SYSTEMS", "prime_hub_pool": "LEIS_PRIME_HUB_POOL",
    "prime_hub_ca": "LEIS_PRIME_HUB_CA", "source_workers": "LEIS_SOURCE_WORKERS",
    "source_concurrency": "LEIS_SOURCE_CONCURRENCY", "client_ca_path": "LEIS_CLIENT_CA", "crl_path": "LEIS_CRL",
    "trusted_proxies": "LEIS_TRUSTED_PROXIES", "client_cert_header": "LEIS_CLIENT_CERT_HEADER",
    "internal_host": "LEIS_INTERNAL_HOST", "internal_port": "LEIS_INTERNAL_PORT",
    "internal_public_url": "LEIS_INTERNAL_PUBLIC_URL", "partner_timeout_seconds": "LEIS_PARTNER_TIMEOUT",
    "partner_max_response_bytes": "LEIS_PARTNER_MAX_RESPONSE_BYTES", "workers": "LEIS_WORKERS",
    "pin_workers": "LEIS_PIN_WORKERS",
    "metrics_port": "LEIS_METRICS_PORT", "metrics_host": "LEIS_METRICS_HOST",
    "endpoint_metrics": "LEIS_ENDPOINT_METRICS", "log_format": "LEIS_LOG_FORMAT", "log_level": "LEIS_LOG_LEVEL",
}


class ConfigError(ValueError):
    """Why a configuration file cannot be used (every problem, one per line)."""


def _switched_on(env: Mapping[str, str], name: str) -> bool:
    """An environment switch that is on unless set to 0, false or no."""
    return env.get(name, "1") not in ("0", "false", "no")


def read_config_file(path: Path) -> dict[str, object]:
    """The settings a TOML file gives: top-level keys named like the Settings fields (a `[leis]`
    table is read too). Relative paths are relative to the file's directory. Raises ConfigError."""
    try:
        with open(path, "rb") as handle:
            data = tomllib.load(handle)
    except OSError as exc:
        raise ConfigError(f"configuration file {path}: cannot be read ({exc.strerror or exc})") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"configuration file {path}: not valid TOML ({exc})") from None
    if isinstance(data.get("leis"), dict):
        data = {**{k: v for k, v in data.items() if k != "leis"}, **data["leis"]}
    hints = typing.get_type_hints(Settings)
    known = {f.name for f in fields(Settings)}
    values: dict[str, object] = {}
    problems: list[str] = []
    for key, raw in data.items():
        if key not in known:
            problems.append(f"unknown setting {key!r}")
            continue
        try:
            values[key] = _coerce(hints[key], raw, path.parent)
        except (TypeError, ValueError) as exc:
            problems.append(f"{key}: {exc}")
    if problems:
        raise ConfigError("\n".join(f"configuration file {path}: {p}" for p in problems))
    return values


def _coerce(hint: object, raw: object, base: Path) -> object:
    args = typing.get_args(hint)
    if type(None) in args:  # X | None
        if raw is None or raw == "":
            return None
        hint = next(a for a in args if a is not type(None))
    if hint is bool:
        if isinstance(raw, bool):
            return raw
        raise TypeError(f"expected true or false, got {raw!r}")
    if hint is int:
        if isinstance(raw, int) and not isinstance(raw, bool):
            return raw
        raise TypeError(f"expected an integer, got {raw!r}")
    if hint is float:
        if isinstance(raw, (int, float)) and not isinstance(raw, bool):
            return float(raw)
        raise TypeError(f"expected a number, got {raw!r}")
    if hint is str:
        if isinstance(raw, str):
            return raw
        raise TypeError(f"expected a string, got {raw!r}")
    if hint is Path:
        if isinstance(raw, str) and raw:
            path = Path(raw).expanduser()
            return path if path.is_absolute() else base / path
        raise TypeError(f"expected a path, got {raw!r}")
    if typing.get_origin(hint) is tuple:
        if isinstance(raw, str):
            raw = [part.strip() for part in raw.split(",") if part.strip()]
        if isinstance(raw, list) and all(isinstance(item, str) for item in raw):
            return tuple(raw)
        raise TypeError(f"expected a list of strings, got {raw!r}")
    raise TypeError(f"unsupported setting type {hint!r}")  # pragma: no cover
