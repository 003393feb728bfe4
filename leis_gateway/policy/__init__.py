"""Policy: agreements (registry), purposes and query rules, decided before any source is asked."""
