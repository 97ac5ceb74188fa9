"""Settings of sender authentication and the DNS client ([auth] of the configuration)."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True, kw_only=True)
class AuthConfig:
    verify: bool = True
    scope: str = "brand"  # brand | all
    authserv_id: str = "otpguard"
    trusted_authserv_ids: tuple[str, ...] = ()
    # Received fields allowed above a believed trusted Authentication-Results field (the trust
    # boundary, authresults.below_boundary); deeper ones are forgeries.
    trusted_hops: int = 0
    use_upstream_results: bool = True
    trusted_arc_sealers: tuple[str, ...] = ()
    nameservers: tuple[str, ...] = ()
    port: int = 53
    query_timeout: float = 2.0
    message_budget: float = 5.0
    cache_size: int = 10_000
    # The DNS probe (ops/dnsprobe.py): can the resolver see the brands' own records?
    probe_interval_seconds: float = 300.0  # 0: never
    probe_domains: tuple[str, ...] = ()  # empty: the first domain of each brand profile
