"""The local SQLite index: a cache of what the store holds, with its search and history."""
