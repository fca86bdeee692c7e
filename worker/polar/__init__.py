"""Stage 4 — Polar: the seat API client and its rate limit.

Nothing here decides what to revoke; it says what Polar answered. ``client`` (the calls,
statuses → ``errors``), ``seats`` (the bodies; ``SeatContainer``), ``auth`` (the bearer
token, an ``httpx.Auth``), ``transport`` (throttling, metrics and the total deadline as
httpx transports), ``pacing`` (the rate limit's arithmetic) and ``ratelimit`` (kept in
Redis for the fleet).
"""
