"""
The process harness: the chat as it runs in production, on loopback, for the
tests that need real processes and for the benchmark (bench/).

One module per job:

- `ports`: free TCP ports on 127.0.0.1.
- `waiting`: polling a condition until it holds, or failing the test.
- `process`: a child process with a log file, stopped by its own PID.
- `redis`: a private redis-server, plain or TLS with a password.
- `database`: a throwaway database migrated and filled by the chat's own
  management commands, and read back for assertions.
- `servers`: Daphne and uvicorn instances, their environment, and a cluster of
  them around one Redis.
- `proxy`: a TCP relay that can stop passing bytes (a network partition).
- `http`: the HTTP requests a browser makes (room page, history API).
- `clients`: WebSocket clients: one that behaves like the browser's page, and a
  raw one that misbehaves on purpose.
- `fixtures`: the pytest fixtures of modules that start processes.

Everything listens on 127.0.0.1 on free ports; only the PIDs started here are
ever stopped. Nothing here touches the system Redis on 6379 or pytest-django's
test database.
"""
