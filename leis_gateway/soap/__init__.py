"""The SOAP layer: the spyne application for the LEXS SR operations, and SOAP faults."""
