"""Stage 1 — intake: what a producer may ask for, validated, recorded and put on the queue.

Requests and batch files are validated whole (``requests``, ``batchfile``), signed
webhooks verified (``webhooks``), and ``producer`` records each request in the store before
it publishes the message to its lane. ``dryrun`` answers "what would this batch do" from
read-only Polar calls.
"""
