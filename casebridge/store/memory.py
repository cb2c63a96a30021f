"""The in-package fake case store (an in-memory SQLite database; same code, same contract)."""

from casebridge.store.sql import MemoryCaseStore

__all__ = ["MemoryCaseStore"]
