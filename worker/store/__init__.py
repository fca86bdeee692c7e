"""Stage 2 — the record store: every request, its events and its outcome (the source of truth).

``models`` are the tables (schema by the Alembic ``migrations``), ``records`` the write side
used by producers and workers, ``queries``/``batches``/``lookup`` the read side for the API,
the dashboard and the CLI, ``scim`` the SCIM tenants and users, ``personreport`` the proof
of a person's offboarding.
"""
