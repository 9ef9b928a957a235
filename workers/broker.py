"""What Jobgate knows of the broker's own keys (kombu's Redis transport).

A job's message is found *exactly*, by its identity, never by a time mark.
Every message of a job has the job's own task id, ``<tenant>:<id>`` (so that
Flower and ``celery inspect query_task`` find the job by its id), and carries
its number ``n`` (the record's message count, ``msgs``) in the message header
``MESSAGE_HEADER`` as ``<tenant>:<id>:<n>``: the pair (task id, n), which no
other message of the job shares. kombu stores a waiting message as JSON in a
Redis list per queue and priority step, and a delivered, unacknowledged one
in the ``unacked`` hash (its delivery time in ``unacked_index``), headers in
clear (only the body is base64, which is why ``n`` is not in the task's args).

Priorities: a job's priority is 0-9, 9 the most urgent (AMQP's sense, which
RabbitMQ follows with a queue's ``x-max-priority``). kombu's Redis transport
serves the *lowest* number first (BRPOP is given the priority lists in
ascending order), so there a job of priority ``p`` goes out at ``9 - p``
(``message_priority``): one list per priority, ``PRIORITY_STEPS``. Every
message of a job, the first and any resend (after a lost worker, a hand-back,
a lost message), has the job's priority: a resend never overtakes a more
urgent job, and waits behind the messages of its own priority sent before it.
kombu clamps a Redis message's priority to 0-9: there is no room for a
"resend" level between two job priorities.
"""

from __future__ import annotations

from typing import Any

import redis
from kombu.transport.redis import Channel

MIN_PRIORITY = 0
MAX_PRIORITY = 9
# kombu's Redis transport: one list per priority (its default has four steps).
PRIORITY_STEPS = list(range(MIN_PRIORITY, MAX_PRIORITY + 1))
# The message header naming the message: ``<task id>:<n>`` (keys.message_id).
MESSAGE_HEADER = "jobgate_message"
UNACKED = Channel.unacked_key
UNACKED_INDEX = Channel.unacked_index_key
# The lists are read from their consumed end, this many messages an LRANGE,
# and at most SCAN_MAX messages a look (~6-8 µs of Redis each: a look blocks
# Redis ~80 ms at most, and reads that far only while a message is missing).
SCAN_CHUNK = 250
SCAN_MAX = 10_000

# KEYS: the queue's lists, then kombu's unacked hash and its index.
# ARGV: the header's mark (``"jobgate_message": "``, as kombu's JSON writes
# it), how many messages one LRANGE reads, the most to read, then the message
# ids looked for.
# Returns, per id: 'q' (waiting in a list), 'u<seconds>' (delivered, not acked,
# at that time), '' (nowhere), or '?' (not found in the SCAN_MAX messages
# read: unknown, a backlog longer than that). The small unacked hash is read first; the
# lists are scanned from their consumed end (the oldest messages, those of the
# jobs looked for) and the scan stops as soon as every id is found, so a full
# scan happens only while a message is missing.
FIND_MESSAGES_LUA = """
local MARK, chunk_size, budget = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local wanted, left = {}, #ARGV - 3
for i = 4, #ARGV do wanted[ARGV[i]] = i - 3 end
local found, missing = {}, ''
local function look(raw)
  -- A plain find (no pattern): kombu writes the property exactly so.
  local at = string.find(raw, MARK, 1, true)
  if not at then
    return nil
  end
  local from = at + #MARK
  local stop = string.find(raw, '"', from, true)
  local i = stop and wanted[string.sub(raw, from, stop - 1)]
  if i and not found[i] then
    return i
  end
  return nil
end
local unacked = redis.call('HGETALL', KEYS[#KEYS - 1])
for j = 1, #unacked, 2 do
  local i = look(unacked[j + 1])
  if i then
    found[i] = 'u' .. (redis.call('ZSCORE', KEYS[#KEYS], unacked[j]) or '0')
    left = left - 1
  end
end
for k = 1, #KEYS - 2 do
  local size = redis.call('LLEN', KEYS[k])
  local from = 0
  while left > 0 and from < size and budget > 0 do
    local n = math.min(chunk_size, budget)
    local chunk = redis.call('LRANGE', KEYS[k], -(from + n), -(from + 1))
    for _, raw in ipairs(chunk) do
      local i = look(raw)
      if i then
        found[i] = 'q'
        left = left - 1
      end
    end
    from = from + n
    budget = budget - n
  end
  if from < size then
    missing = '?'
  end
end
local out = {}
for i = 1, #ARGV - 3 do out[i] = found[i] or missing end
return out
"""


# kombu writes its JSON with the standard library's separators.
HEADER_MARK = f'"{MESSAGE_HEADER}": "'


def queue_lists(queue: str) -> list[str]:
    """The Redis lists that hold a queue's waiting messages, one per priority
    step, in the order kombu serves them (the most urgent job first)."""
    return [f"{queue}{Channel.sep}{step}" if step else queue for step in PRIORITY_STEPS]


def is_redis_url(url: str) -> bool:
    return url.split("://", 1)[0] in {"redis", "rediss", "redis+socket", "unix"}


def is_amqp_url(url: str) -> bool:
    return url.split("://", 1)[0] in {"amqp", "amqps", "pyamqp"}


def message_priority(job_priority: int, broker_url: str) -> int:
    """The priority a job's messages carry on this broker: the job's own on
    RabbitMQ (higher first), reversed on kombu's Redis transport (lower first)."""
    if is_redis_url(broker_url):
        return MAX_PRIORITY - job_priority
    return job_priority


class Broker:
    """Read-only looks at the broker's keys, for the sweep and /metrics."""

    def __init__(self, client: redis.Redis, queues: list[str]) -> None:
        self.client = client
        self.queues = queues
        self.lists = [name for queue in queues for name in queue_lists(queue)]
        self._find = client.register_script(FIND_MESSAGES_LUA)

    def find(self, message_ids: list[str]) -> dict[str, str]:
        """Where each message is: 'queued', 'unacked:<delivered at, s>', ''
        (nowhere) or 'unknown' (not among the first SCAN_MAX messages)."""
        if not message_ids:
            return {}
        keys = [*self.lists, UNACKED, UNACKED_INDEX]
        args: list[str | int] = [HEADER_MARK, SCAN_CHUNK, SCAN_MAX, *message_ids]
        reply: Any = self._find(keys=keys, args=args)
        where: dict[str, str] = {}
        for message_id, raw in zip(message_ids, reply, strict=True):
            text = raw.decode() if isinstance(raw, bytes) else str(raw)
            if text == "q":
                where[message_id] = "queued"
            elif text.startswith("u"):
                where[message_id] = f"unacked:{text[1:]}"
            elif text == "?":
                where[message_id] = "unknown"
            else:
                where[message_id] = ""
        return where

    def waiting(self) -> dict[str, int]:
        """Messages waiting in each queue's lists, every priority."""
        pipe = self.client.pipeline(transaction=False)
        for queue in self.queues:
            for name in queue_lists(queue):
                pipe.llen(name)
        counts = iter(int(n) for n in pipe.execute())
        return {queue: sum(next(counts) for _ in PRIORITY_STEPS) for queue in self.queues}
