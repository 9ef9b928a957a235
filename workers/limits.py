"""Every fixed window and limit that Jobgate's code (Python and Lua) shares.

Python owns these numbers; the Lua scripts receive them through the generated
prelude (``workers/store/scripts.py``), so a number written in a ``.lua`` file
is a bug, as a literal ``jobgate:`` outside ``workers/keys.py`` is.
Operator-tunable values are not here: they live in ``workers/config.py``.
"""

from __future__ import annotations

# -- waits ------------------------------------------------------------------

# The contract's longest wait of one request (``?wait=``, ``Prefer: wait=``),
# in seconds (docs/api.md). Blocking reads never wait longer.
MAX_WAIT_S = 60
# The longest wait of one poll of several jobs (``POST /v1/jobs/results``).
MAX_POLL_WAIT_S = 30
# A waiter reads the record before it blocks on the job's events stream, so
# the stream only has to outlive the longest wait after its last event (with
# a margin for the time between the read and the block).
EVENTS_TTL_MS = (MAX_WAIT_S + 5) * 1000
# The changes a job's events stream keeps while it exists: an SSE client that
# reconnects (Last-Event-ID) within EVENTS_TTL_MS of the last change, having
# missed at most this many, resumes without a gap.
EVENTS_KEPT = 64
# After the end, only a waiter that read the record a moment before needs the
# final event; a stream costs ~4.7 KB however short, so it goes soon.
FINAL_EVENT_TTL_MS = 2_000

# -- workers ----------------------------------------------------------------

# A worker counts as alive (/readyz, /metrics) when it has written its alive
# mark this recently; older marks are trimmed.
WORKER_ALIVE_S = 30
# How often a worker process writes its alive mark (well within the window).
WORKER_ALIVE_EVERY_S = 10

# -- webhooks -----------------------------------------------------------------

# The longest one delivery attempt may take (connect, send, answer).
WEBHOOK_TIMEOUT_S = 10
# A delivery handed to a task is claimed this long: a task that died with it
# (its worker restarted) leaves it due again after this, for the sweep.
WEBHOOK_CLAIM_MS = 60_000
# Deliveries one dispatch claims and sends.
WEBHOOK_BATCH = 100
# Longest callback URL a submit may give.
CALLBACK_URL_MAX = 2048

# -- counters ---------------------------------------------------------------

# The /metrics counters (one hash) live this long after their last count;
# idle for that long, they restart (Prometheus counters may reset).
STATS_TTL_MS = 30 * 24 * 3600 * 1000

# The job histograms' bucket bounds (``jobgate_job_duration_seconds``,
# ``jobgate_job_queue_wait_seconds``), in seconds: jobs run from milliseconds
# to hours. A bucket is named by the bound's ``repr`` (``'1.0'``), in Python
# and in Lua alike.
JOB_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0)

# -- the sweep and lost messages --------------------------------------------

# The sweep looks at this many due jobs per round trip.
SWEEP_BATCH = 200
# The sweep looks for the message of a waiting job only once it was sent this
# long ago (the API's send, with its retries, is over by then); a message
# delivered to a worker this long ago (plus JOBGATE_SHUTDOWN_GRACE, the
# longest a live worker may hold a message unstarted) without starting its
# job is held by a worker that died.
LOST_MESSAGE_GRACE_MS = 10_000
# A message is lost only when a second look, this much later, still finds it
# nowhere (lost_message.lua).
LOST_CONFIRM_MS = 3_000
# How many times one job's message may be found lost and sent again; past it
# the job ends FAILED/WORKER_LOST (retryable).
MAX_LOST_RESENDS = 3
# Listing entries of gone jobs dropped by one create (a bounded cleanup).
FORGET_BATCH = 100

# -- progress -----------------------------------------------------------------

# A job's progress is a percentage; DONE shows this one.
PROGRESS_DONE = 100
# A running job's progress never shows it done.
PROGRESS_RUNNING_MAX = PROGRESS_DONE - 1

# -- the record ---------------------------------------------------------------

# Longest value written into a job's record hash (a worker's name): Redis keeps
# a hash whose values are all at most 64 bytes in its compact encoding.
RECORD_VALUE_MAX = 64
