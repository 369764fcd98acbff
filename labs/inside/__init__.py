"""The container layer made visible and real (docs/inside.md): the inside views of a
session's sandbox, checkpoints, rewind, commit. `tasks` run on the sandbox's host,
`services` check and record, `live` feeds an open panel over the WebSocket."""
from labs.inside import services, tasks  # noqa: F401  (registers the Celery tasks)
