"""``python -m bench``: Jobgate against bare Flask + Redis and bare Celery (issue 7)."""
