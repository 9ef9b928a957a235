"""The worker's Celery app, made from the environment: ``celery -A workers.worker``."""

from workers.celery_app import make_celery
from workers.config import Settings

app = make_celery(Settings.from_env())
