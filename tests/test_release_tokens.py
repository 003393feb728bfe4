"""Item and attachment tokens: opaque, bound to one agreement, expiring, tamper-evident."""
from __future__ import annotations

import base64
from datetime import datetime, timedelta, timezone

import pytest

from leis_gateway.release.tokens import ATTACHMENT_URI_PREFIX, ItemTokens, TokenKind

NOW = datetime(2025, 6, 1, 12, 0, tzinfo=timezone.utc)


@pytest.fixture
def tokens() -> ItemTokens:
    return ItemTokens(b"s" * 32, 3600)


def test_a_token_opens_for_its_agreement_until_it_expires(tokens) -> None:
    token = tokens.issue(TokenKind.ITEM, "TECS", "TS-123", "ndex", NOW, fields=("SSN",))
    ref = tokens.open(token, "ndex", NOW + timedelta(minutes=59))
    assert (ref.kind, ref.source, ref.record_id, ref.agreement_id, ref.fields) == (TokenKind.ITEM, "TECS", "TS-123", "ndex", ("SSN",))
    assert ref.expires_at == NOW + timedelta(hours=1)
    assert tokens.open(token, "ndex", NOW + timedelta(hours=1)) is None


def test_a_token_is_url_safe_and_reveals_nothing(tokens) -> None:
    token = tokens.issue(TokenKind.ATTACHMENT, "EID", "EA-SECRET-RECORD", "ndex", NOW, photo_id="OB-SECRET-PHOTO")
    assert set(token) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
    raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    assert b"SECRET" not in raw and b"ndex" not in raw
    assert tokens.issue(TokenKind.ITEM, "EID", "X", "ndex", NOW) != tokens.issue(TokenKind.ITEM, "EID", "X", "ndex", NOW)


def test_another_agreement_cannot_use_a_token(tokens) -> None:
    token = tokens.issue(TokenKind.ITEM, "TECS", "TS-1", "ndex", NOW)
    assert tokens.open(token, "azlink", NOW) is None and tokens.open(token, "ndex ", NOW) is None


def test_every_altered_token_is_rejected(tokens) -> None:
    token = tokens.issue(TokenKind.ITEM, "TECS", "TS-1", "ndex", NOW)
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    for i in range(len(token)):
        changed = token[:i] + alphabet[(alphabet.index(token[i]) + 1) % 64] + token[i + 1:]
        raw_equal = base64.urlsafe_b64decode(changed + "=" * (-len(changed) % 4)) == base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        if not raw_equal:  # the last character may carry unused padding bits
            assert tokens.open(changed, "ndex", NOW) is None, i
    for garbage in ("", "x", "!!!!", token[:-10], token + "AAAA", "A" * 200):
        assert tokens.open(garbage, "ndex", NOW) is None


def test_another_secret_cannot_open_a_token(tokens) -> None:
    token = tokens.issue(TokenKind.ITEM, "TECS", "TS-1", "ndex", NOW)
    assert ItemTokens(b"t" * 32, 3600).open(token, "ndex", NOW) is None


def test_kinds_and_attachment_uris(tokens) -> None:
    item = tokens.issue(TokenKind.ITEM, "EID", "EA-1", "ndex", NOW)
    photo = tokens.issue(TokenKind.ATTACHMENT, "EID", "EA-1", "ndex", NOW, photo_id="OB-1")
    assert tokens.open(item, "ndex", NOW, TokenKind.ATTACHMENT) is None
    uri = tokens.attachment_uri(photo)
    assert uri.startswith(ATTACHMENT_URI_PREFIX)
    assert tokens.open_attachment_uri(uri, "ndex", NOW).photo_id == "OB-1"
    assert tokens.open_attachment_uri(tokens.attachment_uri(item), "ndex", NOW) is None
    assert tokens.open_attachment_uri(photo, "ndex", NOW) is None  # a bare token is not a URI


def test_expiry_never_exceeds_the_lifetime(tokens) -> None:
    token = tokens.issue(TokenKind.ITEM, "EID", "EA-1", "ndex", NOW, expires_at=NOW + timedelta(days=30))
    assert tokens.open(token, "ndex", NOW).expires_at == NOW + timedelta(hours=1)
    with pytest.raises(ValueError):
        tokens.issue(TokenKind.ITEM, "EID", "EA-1", "ndex", datetime(2025, 6, 1))  # naive time
    with pytest.raises(ValueError):
        ItemTokens(b"short", 60)
