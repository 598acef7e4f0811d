"""The admin HTTP API: a Flask app (``app.py``) served by waitress from an actor (``server.py``)."""
