"""OBIM: booking photographs by photo id (JPEG bytes)."""
from __future__ import annotations

from sqlalchemy import Engine, LargeBinary, String, select
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, sessionmaker

from ..domain import Photo


class ObimBase(DeclarativeBase):
    """Tables of the OBIM database (its own database: `<home>/sources/obim.db`)."""


class ObimPhoto(ObimBase):
    __tablename__ = "obim_photo"

    photo_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    content_type: Mapped[str] = mapped_column(String(40))
    data: Mapped[bytes] = mapped_column(LargeBinary)


class ObimPhotoStore:
    """A `PhotoStore`: one short session per lookup, safe to share between threads."""

    def __init__(self, engine: Engine) -> None:
        self._sessions = sessionmaker(engine)

    def photo(self, photo_id: str) -> Photo | None:
        with self._sessions() as session:
            row = session.scalars(select(ObimPhoto).where(ObimPhoto.photo_id == photo_id)).first()
            return Photo(row.photo_id, row.content_type, bytes(row.data)) if row is not None else None
