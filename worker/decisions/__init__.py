"""Stage 5 — decisions: pure rules, no I/O, table-tested.

``outcomes`` (request states, fault classification, retry plans), ``identity`` (who a
seat shows as its holder in either organization mode, and whether it is the person named),
``occupant`` (what to do about a request: the verdict from its seat list), ``personplan``
(what the seats found for a person mean).
"""
