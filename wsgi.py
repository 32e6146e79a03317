"""WSGI entry point: `gunicorn wsgi:app`, `flask --app wsgi ...`."""
from wallet_web import create_app

app = create_app()
