"""Stage 5 — decisions: pure rules, no I/O, table-tested.

``outcomes`` (request states, fault classification, retry plans), ``occupant`` (who holds
a seat in either organization mode, and whether it is the person being offboarded),
``personplan`` (what the seats found for a person mean).
"""
