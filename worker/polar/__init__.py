"""Stage 4 — Polar: the seat API client, its rate limit, and seat lists shared by a batch.

Nothing here decides what to revoke; it says what Polar answered.
"""
