"""The store: every Redis read and write of Jobgate, by duty.

- ``scripts``: the Lua scripts, their generated prelude, KEYS, common ARGV
  and typed replies;
- ``records``: a job as read (JobRecord, Execution, Started);
- ``transitions``: JobStore, each change of a job one script;
- ``recovery``: the sweep (due jobs, lost messages, resends);
- ``liveness``: workers alive, /metrics, Redis's memory policy;
- ``connection``: the Redis clients, Redis errors as BackendUnavailable;
- ``values``: ids and JSON encodings that ``app/`` shares.
"""

from workers.store.connection import backend_errors, redis_client
from workers.store.records import Execution, JobRecord, Started
from workers.store.scripts import CancelOutcome, CreateOutcome
from workers.store.transitions import Created, JobStore
from workers.store.values import canonical_params, dumps, new_id

__all__ = [
    "CancelOutcome",
    "CreateOutcome",
    "Created",
    "Execution",
    "JobRecord",
    "JobStore",
    "Started",
    "backend_errors",
    "canonical_params",
    "dumps",
    "new_id",
    "redis_client",
]
