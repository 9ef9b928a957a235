"""The Celery side of Jobgate and the job domain: store, runtime, job types."""
