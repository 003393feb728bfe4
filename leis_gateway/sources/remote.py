"""Sources reached over the network: the PRIME hub as a small JSON-over-HTTP service.

The hub's API (served for demos and tests by `sources/prime_hub_sim.py`):

    GET  /health                      {"systems": ["TECS", "EID"]}
    GET  /ping/<system>               {"ok": true}
    POST /search                      {"system": "TECS", "query": {...}, "limit": 26} -> {"records": [...]}
    GET  /records/<system>/<id>       {"record": {...}}              (404: no such record)
    GET  /photos/<id>                 the image bytes, Content-Type image/jpeg (404: none)

Records cross the wire as JSON of the domain's `SourceRecord` (`record_to_json` /
`record_from_json`; the decoder is strict: an answer that does not decode is an invalid
answer, never a half-read record). Every call takes its time limit from the fan-out's deadline
(`federation.remaining_seconds`), or the hub's default limit outside a fan-out, and borrows a
connection from one bounded pool (at most `pool_size` connections, a caller waits for a free one
no longer than its own deadline).
"""
from __future__ import annotations

import dataclasses
import json
import logging
import types
import typing
from datetime import date
from typing import Any
from urllib.parse import quote

import urllib3
from urllib3.exceptions import EmptyPoolError, HTTPError, NewConnectionError, TimeoutError as Urllib3Timeout

from ..domain import Criterion, Photo, Query, QueryField, QueryMatch, SourceRecord, SourceSystem
from ..federation import SourceInvalidResponse, SourceTimeout, SourceUnavailable, remaining_seconds

log = logging.getLogger(__name__)

OWNERS = {SourceSystem.TECS: "CBP", SourceSystem.EID: "ICE", SourceSystem.OBIM: "OBIM"}
PHOTO_TYPES = frozenset({"image/jpeg", "image/png"})
MAX_ANSWER_BYTES = 20_000_000


# --- the codec ---------------------------------------------------------------------------


def query_to_json(query: Query) -> dict[str, Any]:
    return {
        "criteria": [{"field": c.field.value, "value": c.value, "match": c.match.value} for c in query.criteria],
        "max_items": query.max_items,
    }


def query_from_json(data: Any) -> Query:
    """Raises ValueError on anything that is not a query."""
    if not isinstance(data, dict) or not isinstance(data.get("criteria"), list):
        raise ValueError("a query is an object with a list of criteria")
    criteria = []
    for item in data["criteria"]:
        if not isinstance(item, dict) or not isinstance(item.get("value"), str):
            raise ValueError("a criterion is an object with field, value and match")
        criteria.append(Criterion(QueryField(item.get("field")), item["value"], QueryMatch(item.get("match", "exact"))))
    max_items = data.get("max_items", 100)
    if not isinstance(max_items, int) or isinstance(max_items, bool):
        raise ValueError("max_items must be an integer")
    return Query(tuple(criteria), max_items=max_items)


def record_to_json(record: SourceRecord) -> dict[str, Any]:
    return _encode(record)


def record_from_json(data: Any) -> SourceRecord:
    """The SourceRecord a JSON object describes; ValueError (or TypeError) when it is not one."""
    record = _decode(SourceRecord, data)
    if not 0 <= record.score <= 100:
        raise ValueError("score must be 0-100")
    return record


def _encode(value: Any) -> Any:
    if dataclasses.is_dataclass(value):
        return {f.name: _encode(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, frozenset):
        return sorted(_encode(v) for v in value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, str):  # StrEnum members too
        return str(value)
    return value


_HINTS: dict[type, dict[str, Any]] = {}


def _decode(kind: Any, data: Any) -> Any:
    origin = typing.get_origin(kind)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(kind)
        if data is None and type(None) in options:
            return None
        (inner,) = [o for o in options if o is not type(None)]
        return _decode(inner, data)
    if origin is frozenset:
        (inner,) = typing.get_args(kind)
        if not isinstance(data, list):
            raise ValueError("expected a list")
        return frozenset(_decode(inner, v) for v in data)
    if dataclasses.is_dataclass(kind):
        if not isinstance(data, dict):
            raise ValueError(f"expected an object for {kind.__name__}")
        hints = _HINTS.get(kind) or _HINTS.setdefault(kind, typing.get_type_hints(kind))
        names = {f.name for f in dataclasses.fields(kind)}
        unknown = set(data) - names
        if unknown:
            raise ValueError(f"unknown {kind.__name__} fields: {sorted(unknown)}")
        return kind(**{name: _decode(hints[name], data[name]) for name in names if name in data})
    if isinstance(kind, type) and issubclass(kind, str) and kind is not str:  # a StrEnum
        return kind(data)
    if kind is date:
        if not isinstance(data, str):
            raise ValueError("expected a date")
        return date.fromisoformat(data)
    if kind is int:
        if not isinstance(data, int) or isinstance(data, bool):
            raise ValueError("expected an integer")
        return data
    if kind is str:
        if not isinstance(data, str):
            raise ValueError("expected a string")
        return data
    raise TypeError(f"cannot decode {kind!r}")


# --- the client --------------------------------------------------------------------------


class PrimeHubClient:
    """One bounded, keep-alive connection pool to the hub, shared by every adapter and thread."""

    def __init__(
        self,
        base_url: str,
        *,
        pool_size: int = 16,
        default_timeout: float = 5.0,
        connect_timeout: float = 2.0,
        ca_file: str | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.default_timeout = default_timeout
        self.connect_timeout = connect_timeout
        extra: dict[str, Any] = {}
        if self.base_url.startswith("https:") and ca_file:
            extra["ca_certs"] = ca_file
        self._pool = urllib3.connection_from_url(
            self.base_url, maxsize=pool_size, block=True, retries=False,
            headers={"Accept": "application/json", "User-Agent": "leis-gateway"}, **extra,
        )
        self._prefix = urllib3.util.parse_url(self.base_url).path or ""
        self.pool_size = pool_size

    def connections_in_use(self) -> int:
        """Connections borrowed from the pool right now (0 when every call has ended)."""
        queue = self._pool.pool
        return 0 if queue is None else self.pool_size - queue.qsize()

    def connections_made(self) -> int:
        return self._pool.num_connections

    def close(self) -> None:
        self._pool.close()

    def call(self, method: str, path: str, body: Any = None) -> tuple[int, str, bytes]:
        """(status, content type, body) of one request, within the remaining deadline."""
        budget = remaining_seconds()
        if budget is None:
            budget = self.default_timeout
        if budget <= 0:
            raise SourceTimeout("no time left")
        timeout = urllib3.Timeout(total=budget, connect=min(self.connect_timeout, budget))
        headers = {}
        payload = None
        if body is not None:
            payload = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        try:
            response = self._pool.urlopen(
                method, self._prefix + path, body=payload, headers={**self._pool.headers, **headers},
                timeout=timeout, pool_timeout=budget, preload_content=False, redirect=False,
            )
            try:
                data = response.read(MAX_ANSWER_BYTES + 1)
            finally:
                response.release_conn()
        except NewConnectionError as exc:  # refused, unresolvable (a ConnectTimeoutError subclass, for history)
            raise SourceUnavailable(f"{method} {path}: {type(exc).__name__}") from exc
        except (Urllib3Timeout, EmptyPoolError, TimeoutError) as exc:
            raise SourceTimeout(f"{method} {path}: {type(exc).__name__}") from exc
        except (HTTPError, OSError) as exc:
            raise SourceUnavailable(f"{method} {path}: {type(exc).__name__}") from exc
        if len(data) > MAX_ANSWER_BYTES:
            raise SourceInvalidResponse(f"{method} {path}: answer too large")
        return response.status, response.headers.get("Content-Type", ""), data

    def json(self, method: str, path: str, body: Any = None) -> Any | None:
        """The JSON answer; None for 404; SourceUnavailable for other failures."""
        status, content_type, data = self.call(method, path, body)
        if status == 404:
            return None
        if status != 200:
            raise SourceUnavailable(f"{method} {path}: the hub answered {status}")
        if not content_type.startswith("application/json"):
            raise SourceInvalidResponse(f"{method} {path}: not JSON ({content_type})")
        try:
            return json.loads(data)
        except ValueError as exc:
            raise SourceInvalidResponse(f"{method} {path}: malformed JSON") from exc


class RemoteAdapter:
    """A `SourceAdapter` for one source system behind the hub."""

    def __init__(self, client: PrimeHubClient, system: SourceSystem, owner: str | None = None) -> None:
        self.client = client
        self.system = system
        self.ends_by_deadline = False  # an HTTP answer may trickle in past its timeouts
        self.owner = owner or OWNERS[system]

    def search(self, query: Query, limit: int) -> list[SourceRecord]:
        if limit <= 0:
            return []
        answer = self.client.json(
            "POST", "/search", {"system": self.system.value, "query": query_to_json(query), "limit": limit}
        )
        if not isinstance(answer, dict) or not isinstance(answer.get("records"), list):
            raise SourceInvalidResponse("a search answer is an object with a list of records")
        records = [self._decode(item) for item in answer["records"][:limit]]
        records.sort(key=lambda r: -r.score)
        return records

    def fetch(self, record_id: str) -> SourceRecord | None:
        answer = self.client.json("GET", f"/records/{self.system.value}/{quote(record_id, safe='')}")
        if answer is None:
            return None
        if not isinstance(answer, dict) or "record" not in answer:
            raise SourceInvalidResponse("a record answer is an object with a record")
        record = self._decode(answer["record"])
        if record.record_id != record_id:
            raise SourceInvalidResponse("the hub answered with another record")
        return record

    def ping(self) -> bool:
        answer = self.client.json("GET", f"/ping/{self.system.value}")
        if not isinstance(answer, dict) or answer.get("ok") is not True:
            raise SourceUnavailable(f"{self.system} is not available")
        return True

    def _decode(self, item: Any) -> SourceRecord:
        try:
            record = record_from_json(item)
        except (ValueError, TypeError, KeyError) as exc:
            raise SourceInvalidResponse(f"undecodable record: {exc}") from exc
        if record.source != self.system or record.owner != self.owner:
            raise SourceInvalidResponse("a record of another source system")
        return record


class RemotePhotoStore:
    """A `PhotoStore` behind the hub (OBIM booking photographs)."""

    def __init__(self, client: PrimeHubClient) -> None:
        self.client = client

    def photo(self, photo_id: str) -> Photo | None:
        status, content_type, data = self.client.call("GET", f"/photos/{quote(photo_id, safe='')}")
        if status == 404:
            return None
        if status != 200:
            raise SourceUnavailable(f"photo {photo_id}: the hub answered {status}")
        kind = content_type.split(";")[0].strip().lower()
        if kind not in PHOTO_TYPES or not data:
            raise SourceInvalidResponse(f"photo {photo_id}: not an image ({content_type})")
        return Photo(photo_id, kind, data)
