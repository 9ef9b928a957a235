"""The worker's Celery app, made from the environment: ``celery -A workers.worker``."""

from workers import logs
from workers.celery_app import make_celery
from workers.config import Settings

settings = Settings.from_env()
# Logging from the moment Celery imports this module: what Celery warns about
# before its own logging set-up (running as root, say) is a log line too.
logs.configure(settings)
app = make_celery(settings)
