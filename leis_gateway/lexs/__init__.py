"""LEXS 3.1 at the edge: schemas, request parsing and response building.

XML exists in this package (and in `security/`) only; everything it hands to other layers is a
frozen dataclass from `leis_gateway.domain`.
"""
