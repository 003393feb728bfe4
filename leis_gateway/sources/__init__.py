"""Source systems behind the "PRIME hub": TECS and EID person records, OBIM photographs."""
from .base import PhotoStore, PrimeHub, SourceAdapter, SourceUrls, open_hub, source_paths

__all__ = ["PhotoStore", "PrimeHub", "SourceAdapter", "SourceUrls", "open_hub", "source_paths"]
