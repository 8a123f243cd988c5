"""The Heddle server: a REST API (/api/v1) and a web UI over a Heddle store."""

from heddle.server.app import create_app

__all__ = ["create_app"]
