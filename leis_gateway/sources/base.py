"""The "PRIME hub": the source systems the gateway asks live, behind one small interface.

The gateway keeps no copy of any record; every search goes to the sources. Engines (and their
connection pools) are made once per hub and shared by the server's worker threads; every call
uses its own short session.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Protocol, runtime_checkable

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url

from ..domain import Photo, Query, SourceRecord, SourceSystem
from ..federation import deadline_passed

SQLITE_PROGRESS_STEPS = 10_000  # VM instructions between deadline checks (a few microseconds)

SOURCES_DIR = "sources"
DATABASE_FILES = {SourceSystem.TECS: "tecs.db", SourceSystem.EID: "eid.db", SourceSystem.OBIM: "obim.db"}


@runtime_checkable
class SourceAdapter(Protocol):
    """One source system that can be searched for person records."""

    system: SourceSystem
    owner: str  # the data owner: "CBP", "ICE"
    # Every call ends by the fan-out's deadline on its own (a local SQLite source interrupts its
    # query), so the fan-out may run it on the request's own thread (federation `on_caller`).
    ends_by_deadline: bool

    def search(self, query: Query, limit: int) -> list[SourceRecord]:
        """Records matching every criterion, `score` 0-100, best first, at most `limit`."""
        ...

    def fetch(self, record_id: str) -> SourceRecord | None:
        """One record by its source record id (score 100), or None."""
        ...

    def ping(self) -> bool:
        """True when the source answers; raises when it cannot be reached."""
        ...


@runtime_checkable
class PhotoStore(Protocol):
    def photo(self, photo_id: str) -> Photo | None: ...


@dataclass(frozen=True)
class SourceUrls:
    """Where the three source databases are (any SQLAlchemy URL: SQLite, PostgreSQL)."""

    tecs: str
    eid: str
    obim: str

    @classmethod
    def under(cls, home: Path, *, read_only: bool = True) -> "SourceUrls":
        """The demo SQLite files under `<home>/sources/` (opened read-only: the gateway never writes)."""
        paths = source_paths(home)
        return cls(
            tecs=sqlite_url(paths[SourceSystem.TECS], read_only=read_only),
            eid=sqlite_url(paths[SourceSystem.EID], read_only=read_only),
            obim=sqlite_url(paths[SourceSystem.OBIM], read_only=read_only),
        )


def source_paths(home: Path) -> dict[SourceSystem, Path]:
    return {system: Path(home) / SOURCES_DIR / name for system, name in DATABASE_FILES.items()}


def sqlite_url(path: Path, *, read_only: bool = False) -> str:
    absolute = Path(path).resolve()
    if read_only:
        return f"sqlite+pysqlite:///file:{absolute}?mode=ro&uri=true"
    return f"sqlite+pysqlite:///{absolute}"


def create_source_engine(url: str) -> Engine:
    """An engine with a connection pool sized for the server's parallel fan-out."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        engine = create_engine(
            url, connect_args={"check_same_thread": False}, pool_size=8, max_overflow=24
        )

        @event.listens_for(engine, "connect")
        def _tune(dbapi_connection, _record):  # pragma: no cover - trivial
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA cache_size = -16000")  # 16 MB page cache per connection
            cursor.close()
            # A query still running at its fan-out's deadline is interrupted (sqlite3 raises
            # "interrupted"), so abandoned work gives back its thread and connection at once.
            dbapi_connection.set_progress_handler(_interrupt_after_deadline, SQLITE_PROGRESS_STEPS)

        return engine
    return create_engine(url, pool_size=8, max_overflow=24, pool_pre_ping=True)


@dataclass(frozen=True)
class PrimeHub:
    """The searchable sources and the photo store; `close()` releases their pools."""

    adapters: tuple[SourceAdapter, ...]
    photos: PhotoStore
    engines: tuple[Engine, ...] = field(default=(), repr=False, compare=False)
    closers: tuple[Callable[[], None], ...] = field(default=(), repr=False, compare=False)  # e.g. HTTP pools

    def adapter(self, system: SourceSystem | str) -> SourceAdapter | None:
        return next((a for a in self.adapters if a.system == system), None)

    def close(self) -> None:
        for adapter in self.adapters:
            close = getattr(adapter, "close", None)  # e.g. connections a local adapter keeps
            if close is not None:
                close()
        for engine in self.engines:
            engine.dispose()
        for close in self.closers:
            close()

    def __enter__(self) -> "PrimeHub":
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


def _interrupt_after_deadline() -> int:
    return 1 if deadline_passed() else 0


@dataclass(frozen=True)
class RemoteHubSettings:
    """The PRIME hub as a network service (`sources/remote.py`) and which systems to ask there."""

    url: str
    systems: tuple[SourceSystem, ...] = (SourceSystem.TECS, SourceSystem.EID, SourceSystem.OBIM)
    pool_size: int = 16
    default_timeout: float = 5.0
    ca_file: str | None = None


def open_hub(
    home: Path | None = None, *, urls: SourceUrls | None = None, remote: RemoteHubSettings | None = None
) -> PrimeHub:
    """The hub over the demo databases under `home` (or over `urls`, e.g. PostgreSQL); with
    `remote`, the systems it names are asked over the network instead (the others stay local)."""
    if remote is not None:
        return _open_remote_hub(home, urls, remote)
    from .eid import EidAdapter
    from .obim import ObimPhotoStore
    from .tecs import TecsAdapter

    if urls is None:
        if home is None:
            raise ValueError("open_hub needs a home directory or source URLs")
        missing = [str(p) for p in source_paths(home).values() if not p.is_file()]
        if missing:
            raise FileNotFoundError(
                f"source databases missing ({', '.join(missing)}); run `leis-gateway init` first"
            )
        urls = SourceUrls.under(home)
    tecs, eid, obim = (create_source_engine(u) for u in (urls.tecs, urls.eid, urls.obim))
    return PrimeHub(
        adapters=(TecsAdapter(tecs), EidAdapter(eid)),
        photos=ObimPhotoStore(obim),
        engines=(tecs, eid, obim),
    )


def _open_remote_hub(home: Path | None, urls: SourceUrls | None, remote: RemoteHubSettings) -> PrimeHub:
    from .remote import PrimeHubClient, RemoteAdapter, RemotePhotoStore

    client = PrimeHubClient(remote.url, pool_size=remote.pool_size, default_timeout=remote.default_timeout,
                            ca_file=remote.ca_file)
    wanted = set(remote.systems)
    local = open_hub(home, urls=urls) if wanted != {SourceSystem.TECS, SourceSystem.EID, SourceSystem.OBIM} else None
    adapters: list[SourceAdapter] = []
    for system in (SourceSystem.TECS, SourceSystem.EID):
        if system in wanted:
            adapters.append(RemoteAdapter(client, system))
        elif local is not None and (adapter := local.adapter(system)) is not None:
            adapters.append(adapter)
    photos: PhotoStore = RemotePhotoStore(client) if SourceSystem.OBIM in wanted else local.photos  # type: ignore[union-attr]
    return PrimeHub(
        adapters=tuple(adapters),
        photos=photos,
        engines=local.engines if local is not None else (),
        closers=(client.close,),
    )
