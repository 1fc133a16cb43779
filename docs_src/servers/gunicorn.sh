gunicorn main:app --bind 0.0.0.0:8000 --workers 2 --worker-class uvicorn_worker.UvicornWorker
