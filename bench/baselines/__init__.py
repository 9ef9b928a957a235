"""Baselines: bare Flask + Redis and bare Celery, for Jobgate to be compared with."""
