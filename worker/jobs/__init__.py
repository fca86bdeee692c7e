"""Stage 3 — jobs: the queue side, where a message becomes a revocation.

``tasks`` is the thin Celery task; ``revocation`` (one seat) and ``person`` (every seat of a
person) are the services it runs, built from ``guard`` (read and judge who holds a seat;
``seatlists`` shares one read of a subscription's seats across a batch),
``polarstep`` (every Polar call: inline retries, throttle waits, fleet pause, failure plan)
and ``outcome`` (what a run stores; ``RetryLater``, which only ``tasks`` turns into a
Celery retry); ``runtime`` holds what a worker process keeps for its life.
``reconciler`` (the scheduler in every worker), ``nodes``/``heartbeats``/``liveness``,
``seatlock`` and ``fleetpause`` keep the fleet honest: nothing lost, nothing done twice,
nothing sent while Polar would refuse everything.
"""
