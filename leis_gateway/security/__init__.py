"""Transport and message security: demo PKI, mutual TLS, WS-Security signatures.

The three modules have deliberately small surfaces:

- `pki`    creates the demo certificate authority and certificates (idempotent) and loads keys once;
- `tls`    serves a WSGI app over HTTPS that refuses any client without a certificate from our CA;
- `wssec`  signs and verifies SOAP 1.1 envelopes (WSS 1.1, X.509 token profile), refusing wrapped messages.

`zeep_support` builds a zeep `wsse` plugin for test clients and conformance scripts (needs python-xmlsec).
"""
