"""Stage 2 — the record store: every request, its events and its outcome (the source of truth).

``models`` are the tables (schema by the Alembic ``migrations``); ``engine`` opens the
database, migrates or checks the schema and turns database errors into one line;
``records`` (``Store``) is the write side used by producers and workers, on top of
``reader`` (its reads); ``binding`` ties a namespace to one store. ``queries``, ``lookup``
and ``batches`` are the read side for the API, the dashboard and the CLI, ``conflicts``
finds idempotency keys reused for another request, ``scim`` the SCIM tenants and users,
``personreport`` the proof of a person's offboarding, ``csvreport`` the one CSV writer.
"""
