"""Operations for admins: workers, queues, failed tasks, readiness (issue 11)."""
