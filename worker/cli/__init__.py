"""The ``seat-revoker`` command: submit, watch, operate, run workers and the API."""
