"""Custody's Django project package and its governance apps."""

from governance.celery import app as celery_app

__all__ = ("celery_app",)
