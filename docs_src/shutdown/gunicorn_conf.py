# gunicorn -c gunicorn_conf.py myproject.main:app
# Needs the uvicorn-worker package: it runs each worker process with uvicorn.

# Our own budget, in seconds. SHUTDOWN_TIMEOUT is what you pass to add_tasks(shutdown_timeout=).
REQUEST_DRAIN = 10  # in-flight requests finishing after SIGTERM
SHUTDOWN_TIMEOUT = 15  # fastapi-tasks draining shielded tasks
MARGIN = 5  # the app's own teardown, logging, process exit

worker_class = "uvicorn_worker.UvicornWorker"
workers = 4

# After SIGTERM, gunicorn waits this long for a worker before it sends SIGKILL.
graceful_timeout = REQUEST_DRAIN + SHUTDOWN_TIMEOUT + MARGIN

# Workers that stop answering the arbiter for this long are killed and replaced.
timeout = 60
