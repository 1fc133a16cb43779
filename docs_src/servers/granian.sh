granian main:app --interface asgi --host 0.0.0.0 --port 8000
