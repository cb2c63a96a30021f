"""Alembic migrations of the case store schema (run by `SqlCaseStore.start`)."""
