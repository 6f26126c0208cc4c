"""The Flask extensions, made once and bound to the app in `admin.app.create_app`."""

from __future__ import annotations

from flask_babel import Babel
from flask_sqlalchemy import SQLAlchemy
from flask_wtf import CSRFProtect

from schema.base import Base

db = SQLAlchemy(model_class=Base)  # Flask-Admin's session, over our own models
csrf = CSRFProtect()
babel = Babel()
