"""Operations services: readiness checks (`health`), the Celery picture (`celery_state`),
failed tasks and their retry (`failures`), storage usage (`storage`)."""
