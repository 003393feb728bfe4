"""WS-Security signatures for SOAP 1.1 envelopes (OASIS WSS 1.1, X.509 token profile).

What a signed envelope looks like (requests from members, and our responses)::

    <soap:Envelope>
      <soap:Header>
        <wsse:Security soap:mustUnderstand="1">
          <wsu:Timestamp wsu:Id="TS-..."><wsu:Created/><wsu:Expires/></wsu:Timestamp>
          <wsse:BinarySecurityToken wsu:Id="X509-..." ValueType="...#X509v3" EncodingType="...#Base64Binary"/>
          <ds:Signature>  exclusive c14n, RSA-SHA256, SHA-256 digests,
                          one Reference to #Body-id and one to #TS-id (each: a single exc-c14n transform),
                          KeyInfo/wsse:SecurityTokenReference/wsse:Reference URI="#X509-..."
        </wsse:Security>
      </soap:Header>
      <soap:Body wsu:Id="Body-...">...</soap:Body>
    </soap:Envelope>

We build and check the XML-DSig ourselves (lxml exclusive c14n + cryptography) rather than through a
generic XML-DSig library, because the WS-Security shape is fixed and what matters is *which* elements a
signature covers: `verify_envelope` accepts exactly the shape above and returns the signed
`soap:Body` element; nothing else of the envelope is authenticated, so nothing else may be used.
Wrapping defences: one Envelope root, one Header, one Body, one Security header, one Timestamp, no
duplicate ids anywhere, same-document `#id` references only, and every reference must resolve (by
element identity) to *the* Body, *the* Timestamp or *the* token.
"""
from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import hmac
import re
import threading
import uuid
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field, replace
from enum import StrEnum

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from lxml import etree

# --- namespaces and algorithm URIs ---------------------------------------------------------

SOAP11_NS = "http://schemas.xmlsoap.org/soap/envelope/"
WSSE_NS = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd"
WSU_NS = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-utility-1.0.xsd"
DS_NS = "http://www.w3.org/2000/09/xmldsig#"
EXC_C14N = "http://www.w3.org/2001/10/xml-exc-c14n#"

X509V3_TOKEN = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-x509-token-profile-1.0#X509v3"
BASE64_BINARY = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-soap-message-security-1.0#Base64Binary"

RSA_SHA1 = "http://www.w3.org/2000/09/xmldsig#rsa-sha1"
RSA_SHA256 = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"
RSA_SHA384 = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha384"
RSA_SHA512 = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha512"
SHA1 = "http://www.w3.org/2000/09/xmldsig#sha1"
SHA256 = "http://www.w3.org/2001/04/xmlenc#sha256"
SHA384 = "http://www.w3.org/2001/04/xmldsig-more#sha384"
SHA512 = "http://www.w3.org/2001/04/xmlenc#sha512"

_SIGNATURE_HASHES: dict[str, type[hashes.HashAlgorithm]] = {
    RSA_SHA1: hashes.SHA1, RSA_SHA256: hashes.SHA256, RSA_SHA384: hashes.SHA384, RSA_SHA512: hashes.SHA512,
}
_DIGESTS: dict[str, str] = {SHA1: "sha1", SHA256: "sha256", SHA384: "sha384", SHA512: "sha512"}

WSU_ID = f"{{{WSU_NS}}}Id"
_ID_ATTRIBUTES = (WSU_ID, "Id", "ID", "id", "{http://www.w3.org/XML/1998/namespace}id")
_SAME_DOCUMENT_REF = re.compile(r"^#([A-Za-z_][A-Za-z0-9_.-]*)$")  # "#" + NCName, no XPointer



def _q(ns: str, local: str) -> str:
    return f"{{{ns}}}{local}"


# --- configuration, results, errors ----------------------------------------------------------


@dataclass(frozen=True)
class SignatureConfiguration:
    """What a signature must look like to be accepted. The defaults are the safe ones.

    SHA-1 is refused unless explicitly allowed (`allowing_sha1()`), for partners that cannot do better.
    A Body reference is always required; the Timestamp reference is required unless removed from
    `required_references` (do not: it is what makes replay detection and freshness meaningful).
    """

    signature_algorithms: frozenset[str] = frozenset({RSA_SHA256, RSA_SHA384, RSA_SHA512})
    digest_algorithms: frozenset[str] = frozenset({SHA256, SHA384, SHA512})
    required_references: frozenset[str] = frozenset({"Body", "Timestamp"})
    allow_token_reference: bool = True  # a signature may also cover the BinarySecurityToken
    max_clock_skew: dt.timedelta = dt.timedelta(seconds=300)
    max_timestamp_age: dt.timedelta = dt.timedelta(seconds=300)
    min_rsa_key_size: int = 2048
    check_certificate_validity: bool = True  # signer certificate must be within notBefore..notAfter

    def __post_init__(self) -> None:
        unknown = (set(self.signature_algorithms) - set(_SIGNATURE_HASHES)) | (
            set(self.digest_algorithms) - set(_DIGESTS))
        if unknown:
            raise ValueError(f"unknown algorithm(s): {sorted(unknown)}")
        if not self.signature_algorithms or not self.digest_algorithms:
            raise ValueError("at least one signature and one digest algorithm must be allowed")
        if "Body" not in self.required_references or not set(self.required_references) <= {"Body", "Timestamp"}:
            raise ValueError("required_references must contain 'Body' (and should contain 'Timestamp')")
        if self.max_clock_skew < dt.timedelta(0) or self.max_timestamp_age <= dt.timedelta(0):
            raise ValueError("clock skew and timestamp age must be positive")

    def allowing_sha1(self) -> SignatureConfiguration:
        """The same configuration, also accepting RSA-SHA1 signatures and SHA-1 digests (legacy peers)."""
        return replace(self, signature_algorithms=self.signature_algorithms | {RSA_SHA1},
                       digest_algorithms=self.digest_algorithms | {SHA1})


DEFAULT_CONFIGURATION = SignatureConfiguration()


class ErrorCode(StrEnum):
    """Stable refusal codes (they appear in SOAP faults and in the audit log)."""

    NO_SIGNATURE = "NoSignature"
    BAD_SIGNATURE = "BadSignature"
    WRONG_SIGNER = "WrongSigner"
    STALE = "Stale"
    REPLAY = "Replay"  # raised by the caller's replay cache, keyed by VerifiedEnvelope.replay_key
    UNSUPPORTED_ALGORITHM = "UnsupportedAlgorithm"
    MALFORMED = "Malformed"


class WsSecurityError(Exception):
    """A refused envelope. `code` is stable; `detail` is for logs and never quotes the message."""

    def __init__(self, code: ErrorCode, detail: str = ""):
        super().__init__(f"{code.value}: {detail}" if detail else code.value)
        self.code = ErrorCode(code)
        self.detail = detail


@dataclass(frozen=True)
class VerifiedEnvelope:
    """The outcome of a successful verification.

    `body` is the signed `soap:Body` element: the only part of the envelope callers may process.
    `replay_key` (hex SHA-256 of the signature value) is unique per signature; keep it in a replay
    cache at least until `replay_window_ends`.
    """

    signer_certificate: x509.Certificate
    body: etree._Element = field(repr=False)
    created: dt.datetime
    expires: dt.datetime | None
    replay_key: str
    replay_window_ends: dt.datetime
    signature_algorithm: str

    @property
    def signer_fingerprint(self) -> str:
        return hashlib.sha256(self.signer_certificate.public_bytes(serialization.Encoding.DER)).hexdigest()


# --- signing ------------------------------------------------------------------------------


def sign_envelope(envelope: etree._Element, key: rsa.RSAPrivateKey, cert: x509.Certificate, *,
                  created: dt.datetime | None = None, expires_in: float = 300,
                  signature_algorithm: str = RSA_SHA256, digest_algorithm: str = SHA256) -> etree._Element:
    """Add a WS-Security header signing Body and Timestamp to `envelope` (in place; also returned).

    `key` is a loaded key object (load once with `pki.load_signing_credentials`); the Header is created
    if missing; an envelope that already carries a Security header is refused (no double signing).
    """
    if signature_algorithm not in _SIGNATURE_HASHES or digest_algorithm not in _DIGESTS:
        raise ValueError("unknown signature or digest algorithm")
    if not isinstance(key, rsa.RSAPrivateKey):
        raise TypeError("key must be a loaded RSA private key object")
    if envelope.tag != _q(SOAP11_NS, "Envelope"):
        raise ValueError("not a SOAP 1.1 envelope")
    bodies = envelope.findall(_q(SOAP11_NS, "Body"))
    if len(bodies) != 1:
        raise ValueError("envelope must have exactly one soap:Body")
    body = bodies[0]
    header = envelope.find(_q(SOAP11_NS, "Header"))
    if header is None:
        header = etree.Element(_q(SOAP11_NS, "Header"))
        envelope.insert(0, header)
    if header.find(_q(WSSE_NS, "Security")) is not None:
        raise ValueError("envelope already has a wsse:Security header")

    created = (created or dt.datetime.now(dt.timezone.utc)).astimezone(dt.timezone.utc)
    security = etree.SubElement(header, _q(WSSE_NS, "Security"), nsmap={"wsse": WSSE_NS, "wsu": WSU_NS})
    security.set(_q(SOAP11_NS, "mustUnderstand"), "1")

    timestamp = etree.SubElement(security, _q(WSU_NS, "Timestamp"))
    timestamp.set(WSU_ID, _new_id("TS"))
    etree.SubElement(timestamp, _q(WSU_NS, "Created")).text = _format_time(created)
    etree.SubElement(timestamp, _q(WSU_NS, "Expires")).text = _format_time(
        created + dt.timedelta(seconds=expires_in))

    token = etree.SubElement(security, _q(WSSE_NS, "BinarySecurityToken"),
                             {"EncodingType": BASE64_BINARY, "ValueType": X509V3_TOKEN})
    token.set(WSU_ID, _new_id("X509"))
    token.text = base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode("ascii")

    if not body.get(WSU_ID):
        body.set(WSU_ID, _new_id("Body"))

    signature = etree.SubElement(security, _q(DS_NS, "Signature"), nsmap={"ds": DS_NS})
    signed_info = etree.SubElement(signature, _q(DS_NS, "SignedInfo"))
    etree.SubElement(signed_info, _q(DS_NS, "CanonicalizationMethod"), Algorithm=EXC_C14N)
    etree.SubElement(signed_info, _q(DS_NS, "SignatureMethod"), Algorithm=signature_algorithm)
    for target in (body, timestamp):
        reference = etree.SubElement(signed_info, _q(DS_NS, "Reference"), URI="#" + target.get(WSU_ID))
        transforms = etree.SubElement(reference, _q(DS_NS, "Transforms"))
        etree.SubElement(transforms, _q(DS_NS, "Transform"), Algorithm=EXC_C14N)
        etree.SubElement(reference, _q(DS_NS, "DigestMethod"), Algorithm=digest_algorithm)
        etree.SubElement(reference, _q(DS_NS, "DigestValue")).text = base64.b64encode(
            hashlib.new(_DIGESTS[digest_algorithm], _c14n(target)).digest()).decode("ascii")

    signature_value = key.sign(_c14n(signed_info), padding.PKCS1v15(),
                               _SIGNATURE_HASHES[signature_algorithm]())
    etree.SubElement(signature, _q(DS_NS, "SignatureValue")).text = base64.b64encode(
        signature_value).decode("ascii")
    key_info = etree.SubElement(signature, _q(DS_NS, "KeyInfo"))
    str_ = etree.SubElement(key_info, _q(WSSE_NS, "SecurityTokenReference"))
    etree.SubElement(str_, _q(WSSE_NS, "Reference"), URI="#" + token.get(WSU_ID), ValueType=X509V3_TOKEN)
    return envelope


# --- verification -------------------------------------------------------------------------

_parsers = threading.local()  # lxml parser objects must not be shared between threads


def _parser() -> etree.XMLParser:
    parser = getattr(_parsers, "parser", None)
    if parser is None:
        parser = _parsers.parser = etree.XMLParser(
            resolve_entities=False, no_network=True, load_dtd=False, dtd_validation=False, huge_tree=False)
    return parser


def verify_envelope(envelope: bytes | etree._Element, *, expected_certs: Collection[x509.Certificate] | None,
                    config: SignatureConfiguration = DEFAULT_CONFIGURATION,
                    now: dt.datetime | None = None) -> VerifiedEnvelope:
    """Verify the WS-Security signature of a SOAP 1.1 envelope; raise `WsSecurityError` if refused.

    `expected_certs`: the certificates the signer may use (pinned, e.g. those of the agreement the TLS
    client certificate belongs to). None accepts any signer whose signature is valid: the caller must then
    decide about `signer_certificate` itself. The envelope is not modified.
    """
    now = (now or dt.datetime.now(dt.timezone.utc)).astimezone(dt.timezone.utc)
    root = _parse(envelope)

    # 1. Structure: exactly one of everything that a signature could be "moved" between.
    if root.tag != _q(SOAP11_NS, "Envelope") or root.getparent() is not None:
        raise WsSecurityError(ErrorCode.MALFORMED, "root is not a SOAP 1.1 Envelope")
    children = _elements(root)
    headers = [c for c in children if c.tag == _q(SOAP11_NS, "Header")]
    bodies = [c for c in children if c.tag == _q(SOAP11_NS, "Body")]
    if len(bodies) != 1 or len(headers) > 1 or len(headers) + len(bodies) != len(children):
        raise WsSecurityError(ErrorCode.MALFORMED, "envelope must hold one optional Header and one Body")
    if headers and children.index(headers[0]) != 0:
        raise WsSecurityError(ErrorCode.MALFORMED, "Header must precede Body")
    if len(root.findall(f".//{_q(SOAP11_NS, 'Body')}")) != 1:
        raise WsSecurityError(ErrorCode.MALFORMED, "a soap:Body element elsewhere in the envelope")
    body = bodies[0]
    _refuse_comments_and_pis(body)
    securities = [c for c in _elements(headers[0]) if c.tag == _q(WSSE_NS, "Security")] if headers else []
    if not securities:
        raise WsSecurityError(ErrorCode.NO_SIGNATURE, "no wsse:Security header")
    if len(securities) > 1:
        raise WsSecurityError(ErrorCode.MALFORMED, "more than one wsse:Security header")
    security = securities[0]
    signatures = _children(security, DS_NS, "Signature")
    if not signatures:
        raise WsSecurityError(ErrorCode.NO_SIGNATURE, "no ds:Signature in the Security header")
    if len(signatures) > 1:
        raise WsSecurityError(ErrorCode.MALFORMED, "more than one ds:Signature")
    signature = signatures[0]
    timestamps = _children(security, WSU_NS, "Timestamp")
    if len(timestamps) > 1:
        raise WsSecurityError(ErrorCode.MALFORMED, "more than one wsu:Timestamp")
    timestamp = timestamps[0] if timestamps else None
    if timestamp is None and "Timestamp" in config.required_references:
        raise WsSecurityError(ErrorCode.MALFORMED, "no wsu:Timestamp in the Security header")
    ids = _unique_ids(root)

    # 2. The Signature element's own shape and algorithms.
    signed_info, signature_value, key_info = _signature_parts(signature)
    si_children = _elements(signed_info)
    if len(si_children) < 3:
        raise WsSecurityError(ErrorCode.MALFORMED, "SignedInfo must hold methods and references")
    c14n_method, signature_method, *references = si_children
    if c14n_method.tag != _q(DS_NS, "CanonicalizationMethod") or signature_method.tag != _q(
            DS_NS, "SignatureMethod") or not references:
        raise WsSecurityError(ErrorCode.MALFORMED, "unexpected SignedInfo content")
    si_prefixes = _exc_c14n_prefixes(c14n_method)
    algorithm = signature_method.get("Algorithm")
    if algorithm not in config.signature_algorithms or _elements(signature_method):
        raise WsSecurityError(ErrorCode.UNSUPPORTED_ALGORITHM, f"signature method {algorithm!r}")
    parsed_refs = [_parse_reference(r, config) for r in references]

    # 3. What the references cover: Body and Timestamp (and optionally the token), each exactly once.
    token = _token(key_info, security, ids)
    covered: dict[str, etree._Element] = {}
    allowed = {"Body": body, "Timestamp": timestamp}
    if config.allow_token_reference:
        allowed["Token"] = token
    for ref_id, _prefixes, _digest_alg, _digest in parsed_refs:
        target = ids.get(ref_id)
        name = next((n for n, el in allowed.items() if el is not None and el is target), None)
        if target is None or name is None:
            raise WsSecurityError(ErrorCode.BAD_SIGNATURE, "a reference points outside Body/Timestamp/token")
        if name in covered:
            raise WsSecurityError(ErrorCode.MALFORMED, f"{name} referenced twice")
        covered[name] = target
    missing = set(config.required_references) - set(covered)
    if missing:
        raise WsSecurityError(ErrorCode.BAD_SIGNATURE, f"signature does not cover {sorted(missing)}")

    # 4. Cryptography: the SignedInfo signature with the token's key, then each digest.
    signer = _certificate(token)
    public_key = signer.public_key()
    if not isinstance(public_key, rsa.RSAPublicKey) or public_key.key_size < config.min_rsa_key_size:
        raise WsSecurityError(ErrorCode.UNSUPPORTED_ALGORITHM, "signer key is not RSA of sufficient size")
    raw_signature = _b64(signature_value.text, "SignatureValue")
    try:
        public_key.verify(raw_signature, _c14n(signed_info, si_prefixes), padding.PKCS1v15(),
                          _SIGNATURE_HASHES[algorithm]())
    except InvalidSignature:
        raise WsSecurityError(ErrorCode.BAD_SIGNATURE, "signature value does not verify") from None
    for ref_id, prefixes, digest_alg, digest in parsed_refs:
        actual = hashlib.new(_DIGESTS[digest_alg], _c14n(ids[ref_id], prefixes)).digest()
        if not hmac.compare_digest(actual, digest):
            raise WsSecurityError(ErrorCode.BAD_SIGNATURE, "digest mismatch")

    # 5. Who signed, and when.
    if expected_certs is not None:
        signer_der = signer.public_bytes(serialization.Encoding.DER)
        if not any(c.public_bytes(serialization.Encoding.DER) == signer_der for c in expected_certs):
            raise WsSecurityError(ErrorCode.WRONG_SIGNER, "signer certificate is not an expected one")
    if config.check_certificate_validity and not (
            signer.not_valid_before_utc - config.max_clock_skew <= now
            <= signer.not_valid_after_utc + config.max_clock_skew):
        raise WsSecurityError(ErrorCode.WRONG_SIGNER, "signer certificate is outside its validity period")
    if timestamp is not None:
        _refuse_comments_and_pis(timestamp)
    created, expires = _timestamp_times(timestamp) if timestamp is not None else (now, None)
    skew = config.max_clock_skew
    if created > now + skew:
        raise WsSecurityError(ErrorCode.STALE, "Timestamp Created is in the future")
    if now - created > config.max_timestamp_age + skew:
        raise WsSecurityError(ErrorCode.STALE, "Timestamp is too old")
    if expires is not None and (expires < created or now > expires + skew):
        raise WsSecurityError(ErrorCode.STALE, "Timestamp has expired")
    window_end = created + config.max_timestamp_age + skew
    if expires is not None:
        window_end = min(window_end, expires + skew)

    return VerifiedEnvelope(signer_certificate=signer, body=body, created=created, expires=expires,
                            replay_key=hashlib.sha256(raw_signature).hexdigest(),
                            replay_window_ends=window_end, signature_algorithm=algorithm)


# --- helpers ------------------------------------------------------------------------------


def _parse(envelope: bytes | etree._Element) -> etree._Element:
    if isinstance(envelope, etree._Element):
        if envelope.getroottree().docinfo.doctype:
            raise WsSecurityError(ErrorCode.MALFORMED, "DTDs are not accepted")
        return envelope
    if isinstance(envelope, str):
        raise TypeError("pass the envelope as bytes (the wire form), not str")
    try:
        tree = etree.fromstring(bytes(envelope), _parser()).getroottree()
    except etree.XMLSyntaxError:
        raise WsSecurityError(ErrorCode.MALFORMED, "not well-formed XML") from None
    if tree.docinfo.doctype or tree.docinfo.internalDTD is not None:
        raise WsSecurityError(ErrorCode.MALFORMED, "DTDs are not accepted")
    return tree.getroot()


def _elements(node: etree._Element) -> list[etree._Element]:
    """Element children only (comments and processing instructions are not part of the structure)."""
    return [c for c in node if isinstance(c.tag, str)]


def _children(node: etree._Element, ns: str, local: str) -> list[etree._Element]:
    return [c for c in _elements(node) if c.tag == _q(ns, local)]


def _refuse_comments_and_pis(element: etree._Element) -> None:
    """Comments are outside exclusive c14n: inserted into signed text they would change what a reader
    of `.text` sees without breaking the signature (the SAML comment-truncation class). LEXS needs none."""
    if next(element.iter(etree.Comment, etree.ProcessingInstruction), None) is not None:
        raise WsSecurityError(ErrorCode.MALFORMED, "comments and processing instructions are not accepted")


def _unique_ids(root: etree._Element) -> dict[str, etree._Element]:
    """Every id-like attribute value in the document; a value used twice is a wrapping attempt."""
    ids: dict[str, etree._Element] = {}
    for el in root.iter(etree.Element):
        for attr in _ID_ATTRIBUTES:
            value = el.get(attr)
            if value is None:
                continue
            if value in ids:
                raise WsSecurityError(ErrorCode.MALFORMED, "duplicate id attribute value")
            ids[value] = el
    return ids


def _signature_parts(signature: etree._Element) -> tuple[etree._Element, etree._Element, etree._Element]:
    parts = _elements(signature)
    tags = [p.tag for p in parts]
    if tags != [_q(DS_NS, "SignedInfo"), _q(DS_NS, "SignatureValue"), _q(DS_NS, "KeyInfo")]:
        raise WsSecurityError(ErrorCode.MALFORMED, "Signature must be SignedInfo, SignatureValue, KeyInfo")
    return parts[0], parts[1], parts[2]


def _exc_c14n_prefixes(method: etree._Element) -> list[str] | None:
    """Check that `method` is exclusive c14n (without comments); return its InclusiveNamespaces list."""
    if method.get("Algorithm") != EXC_C14N:
        raise WsSecurityError(ErrorCode.UNSUPPORTED_ALGORITHM, f"c14n/transform {method.get('Algorithm')!r}")
    params = _elements(method)
    if not params:
        return None
    if len(params) != 1 or params[0].tag != _q(EXC_C14N, "InclusiveNamespaces"):
        raise WsSecurityError(ErrorCode.UNSUPPORTED_ALGORITHM, "unexpected c14n parameters")
    prefix_list = params[0].get("PrefixList", "").split()
    return [("" if p == "#default" else p) for p in prefix_list] or None


def _parse_reference(reference: etree._Element, config: SignatureConfiguration
                     ) -> tuple[str, list[str] | None, str, bytes]:
    """(target id, inclusive prefixes, digest algorithm, digest) of one ds:Reference, strictly."""
    if reference.tag != _q(DS_NS, "Reference"):
        raise WsSecurityError(ErrorCode.MALFORMED, "unexpected SignedInfo child")
    match = _SAME_DOCUMENT_REF.match(reference.get("URI") or "")
    if not match:
        raise WsSecurityError(ErrorCode.MALFORMED, "references must be same-document '#id' URIs")
    parts = _elements(reference)
    if [p.tag for p in parts] != [_q(DS_NS, "Transforms"), _q(DS_NS, "DigestMethod"), _q(DS_NS, "DigestValue")]:
        raise WsSecurityError(ErrorCode.MALFORMED, "Reference must be Transforms, DigestMethod, DigestValue")
    transforms, digest_method, digest_value = parts
    transform_list = _elements(transforms)
    if len(transform_list) != 1 or transform_list[0].tag != _q(DS_NS, "Transform"):
        raise WsSecurityError(ErrorCode.UNSUPPORTED_ALGORITHM, "exactly one exc-c14n transform is accepted")
    prefixes = _exc_c14n_prefixes(transform_list[0])
    digest_alg = digest_method.get("Algorithm")
    if digest_alg not in config.digest_algorithms:
        raise WsSecurityError(ErrorCode.UNSUPPORTED_ALGORITHM, f"digest method {digest_alg!r}")
    return match.group(1), prefixes, digest_alg, _b64(digest_value.text, "DigestValue")


def _token(key_info: etree._Element, security: etree._Element,
           ids: dict[str, etree._Element]) -> etree._Element:
    """The BinarySecurityToken that KeyInfo points at; it must be a child of *our* Security header."""
    strs = _elements(key_info)
    if len(strs) != 1 or strs[0].tag != _q(WSSE_NS, "SecurityTokenReference"):
        raise WsSecurityError(ErrorCode.MALFORMED, "KeyInfo must hold one wsse:SecurityTokenReference")
    refs = _elements(strs[0])
    if len(refs) != 1 or refs[0].tag != _q(WSSE_NS, "Reference"):
        raise WsSecurityError(ErrorCode.MALFORMED, "only a wsse:Reference to a BinarySecurityToken is supported")
    match = _SAME_DOCUMENT_REF.match(refs[0].get("URI") or "")
    token = ids.get(match.group(1)) if match else None
    if (token is None or token.tag != _q(WSSE_NS, "BinarySecurityToken")
            or token.getparent() is not security):
        raise WsSecurityError(ErrorCode.MALFORMED, "token reference does not resolve to our BinarySecurityToken")
    if token.get("ValueType") != X509V3_TOKEN or token.get("EncodingType", BASE64_BINARY) != BASE64_BINARY:
        raise WsSecurityError(ErrorCode.MALFORMED, "BinarySecurityToken must be a base64 X509v3 certificate")
    return token


def _certificate(token: etree._Element) -> x509.Certificate:
    try:
        return x509.load_der_x509_certificate(_b64(token.text, "BinarySecurityToken"))
    except ValueError:
        raise WsSecurityError(ErrorCode.MALFORMED, "BinarySecurityToken is not a certificate") from None


def _timestamp_times(timestamp: etree._Element) -> tuple[dt.datetime, dt.datetime | None]:
    parts = _elements(timestamp)
    tags = [p.tag for p in parts]
    if tags not in ([_q(WSU_NS, "Created")], [_q(WSU_NS, "Created"), _q(WSU_NS, "Expires")]):
        raise WsSecurityError(ErrorCode.MALFORMED, "Timestamp must be Created and optionally Expires")
    created = _parse_time(parts[0].text)
    expires = _parse_time(parts[1].text) if len(parts) == 2 else None
    return created, expires


def _parse_time(text: str | None) -> dt.datetime:
    try:
        value = dt.datetime.fromisoformat((text or "").strip())
    except ValueError:
        raise WsSecurityError(ErrorCode.MALFORMED, "Timestamp value is not an xsd:dateTime") from None
    if value.tzinfo is None:
        raise WsSecurityError(ErrorCode.MALFORMED, "Timestamp value has no time zone")
    return value.astimezone(dt.timezone.utc)


def _format_time(value: dt.datetime) -> str:
    return value.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


def _b64(text: str | None, what: str) -> bytes:
    try:
        return base64.b64decode("".join((text or "").split()), validate=True)
    except (binascii.Error, ValueError):
        raise WsSecurityError(ErrorCode.MALFORMED, f"{what} is not base64") from None


def _c14n(element: etree._Element, inclusive_prefixes: Iterable[str] | None = None) -> bytes:
    """Exclusive XML canonicalization 1.0 (without comments) of `element`'s subtree."""
    return etree.tostring(element, method="c14n", exclusive=True, with_comments=False,
                          inclusive_ns_prefixes=list(inclusive_prefixes) if inclusive_prefixes else None)


def _new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex}"
