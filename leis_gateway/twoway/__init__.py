"""Two-way sharing (issue 7): internal analysts (AFI) query the member agencies' own services.

    AFI --mTLS(afi)+signed--> internal endpoint (own port, INTERNAL_SR_PATH)
        -> guard + edge (audit in, verify, sign out, audit out: the same pieces as the member endpoint)
        -> endpoint.InternalEndpoint: validate -> lexs.parse -> service.TwoWayService
        -> partners.select: active two-way agreements with an endpoint (or those named in
           DataOwnerIdentifier; naming a one-way, suspended or expired one is an advisory)
        -> client.PartnerClient, in parallel under the requester's deadline: a fresh LEXS request
           per partner (messages.py), signed by the gateway, mutual TLS with the gateway's client
           certificate; the answer is audited, its signature checked against the partner's
           registered certificate and its body schema-validated before anything of it is used
        -> messages.py: the partners' packages, data owner kept, ids replaced by sealed ones
           (ids.py) that route getDataItem/getAttachment back to the issuing partner.

Nothing from a partner is kept: answers live in memory for the time of one request, and the
only place they are written is the audit log (encrypted). `simulator.py` is a small partner
service for tests and the demo (`scripts/partner-sim`).

XML lives here (messages.py) as well as in `lexs/`: partner packages are passed on verbatim
(that is what keeps the partner's data owner, contacts and dissemination rules intact), so
they are never turned into domain objects and back.
"""
