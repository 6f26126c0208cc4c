"""Messages of the services (InvalidInput raised in rating/, workers/, admin/accounts.py) in
the reader's language: in a web request, the user's (Flask-Babel, admin/translations); from
the CLI, workers and tests without a request, English. `pybabel extract` finds them by `tr`."""

from __future__ import annotations


def tr(message: str, **params) -> str:
    """`message % params`, translated when a back-office page asks."""
    from flask import has_request_context

    if has_request_context():
        from flask_babel import gettext

        return gettext(message, **params)
    return message % params if params else message
