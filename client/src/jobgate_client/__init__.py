"""Python client for the Jobgate API: submit long jobs, watch them, fetch their results.

from jobgate_client import Client

with Client("http://127.0.0.1:8000") as client:
    job = client.submit("demo.count", {"n": 100, "delay": 0.05})
    job.wait(on_progress=lambda s: print(s.progress, s.message))
    print(job.result())
"""

from jobgate_client._async import AsyncClient, AsyncJob
from jobgate_client._core import VERSION, Policy
from jobgate_client._sync import Client, Job
from jobgate_client.errors import (
    IdConflict,
    JobExpired,
    JobFailed,
    JobgateError,
    JobNotFound,
    RateLimited,
    Unauthorized,
    Unavailable,
    ValidationFailed,
    WaitTimeout,
)
from jobgate_client.models import JobType, Snapshot

__version__ = VERSION

__all__ = [
    "AsyncClient",
    "AsyncJob",
    "Client",
    "IdConflict",
    "Job",
    "JobExpired",
    "JobFailed",
    "JobNotFound",
    "JobType",
    "JobgateError",
    "Policy",
    "RateLimited",
    "Snapshot",
    "Unauthorized",
    "Unavailable",
    "ValidationFailed",
    "WaitTimeout",
    "__version__",
]
