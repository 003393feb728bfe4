"""Release: which records and which of their elements may leave, per agreement; opaque item ids."""
