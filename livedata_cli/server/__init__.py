"""The hosted Live-Data API (``livedata server``, DESIGN §7).

One package per concern: ``config`` (settings), ``db`` (every table, the
named migrations, SQLAlchemy Core on SQLite or PostgreSQL), ``keys`` (the
server's own blob-key versions and token secret), ``security`` (Argon2id,
JWT, TOTP), ``factors`` (password and code attempts, their limits),
``blobs`` (streamed AES-256-GCM layer over an object store),
``deps`` (what every route depends on: the context, the caller, the caller's
objects, pages, audit records), one module per API area (``auth``,
``files``, ``shares``, ``conversions``, ``users``, ``ops``, ``admin_api``),
``operator`` (the operator commands run from a shell: migrate, keys,
accounts) and ``app`` which composes them.  Nothing here is imported by the
command line until a ``livedata server`` command runs.
"""
