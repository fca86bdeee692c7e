"""Not the product: the local Polar stand-in and the harness that runs a whole stack on one
machine (``seat-revoker sandbox``/``demo``, the integration tests, the benchmarks).

The stand-in follows Polar's server source (polarsource/polar ``server/polar/``); each
module cites the files it mirrors.
"""
