"""The results history database (SQLite by default, any SQLAlchemy URL) and Parquet export of a run."""

from harness.history.store import HISTORY_FILE, History, database_url

__all__ = ["HISTORY_FILE", "History", "database_url"]
