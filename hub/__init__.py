"""The model hub: an HTTP service over an SQLite registry of signed model bundles."""
