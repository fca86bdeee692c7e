"""Stage 3 — jobs: the queue side, where a message becomes a revocation.

``tasks`` is the thin Celery task; ``revocation`` (one seat) and ``person`` (every seat of a
person) are the services it runs; ``runtime`` holds what a worker process keeps for its
life. ``reconciler`` (the scheduler in every worker), ``nodes``/``heartbeats``/``liveness``,
``seatlock`` and ``fleetpause`` keep the fleet honest: nothing lost, nothing done twice,
nothing sent while Polar would refuse everything.
"""
