"""The "PRIME hub": the source systems the gateway asks live, behind one small interface.

The gateway keeps no copy of any record; every search goes to the sources. Engines (and their
connection pools) are made once per hub and shared by the server's worker threads; every call
uses its own short session.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, runtime_checkable

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url

from ..domain import Photo, Query, SourceRecord, SourceSystem

SOURCES_DIR = "sources"
DATABASE_FILES = {SourceSystem.TECS: "tecs.db", SourceSystem.EID: "eid.db", SourceSystem.OBIM: "obim.db"}


@runtime_checkable
class SourceAdapter(Protocol):
    """One source system that can be searched for person records."""

    system: SourceSystem
    owner: str  # the data owner: "CBP", "ICE"

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

        return engine
    return create_engine(url, pool_size=8, max_overflow=24, pool_pre_ping=True)


@dataclass(frozen=True)
class PrimeHub:
    """The searchable sources and the photo store; `close()` releases their pools."""

    adapters: tuple[SourceAdapter, ...]
    photos: PhotoStore
    engines: tuple[Engine, ...] = field(default=(), repr=False, compare=False)

    def adapter(self, system: SourceSystem | str) -> SourceAdapter | None:
        return next((a for a in self.adapters if a.system == system), None)

    def close(self) -> None:
        for engine in self.engines:
            engine.dispose()

    def __enter__(self) -> "PrimeHub":
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


def open_hub(home: Path | None = None, *, urls: SourceUrls | None = None) -> PrimeHub:
    """The hub over the demo databases under `home` (or over `urls`, e.g. PostgreSQL)."""
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
