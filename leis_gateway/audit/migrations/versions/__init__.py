"""Migration scripts (a package so that they install with leis_gateway)."""
