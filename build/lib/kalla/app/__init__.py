"""The Kalla app: REST API, metadata store and run dispatch (``kalla serve``)."""

from kalla.app.main import create_app

__all__ = ["create_app"]
