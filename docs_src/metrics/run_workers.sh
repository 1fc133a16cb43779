#!/usr/bin/env sh
# Several workers, one set of metrics: each worker writes its values under this directory and
# whichever worker answers GET /metrics sums them up. Empty it before every start.
export PROMETHEUS_MULTIPROC_DIR=/tmp/fastapi-tasks-metrics
rm -rf "$PROMETHEUS_MULTIPROC_DIR" && mkdir -p "$PROMETHEUS_MULTIPROC_DIR"
exec uvicorn docs_src.metrics.app:app --workers 4 --host 127.0.0.1 --port 8000
