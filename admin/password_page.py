"""Change your own password: the current one first (counted like a failed login when wrong),
then the new one twice. Every other session of the account ends; this one goes on in a new
session."""

from __future__ import annotations

from flask import abort, flash, redirect, request, url_for
from flask_admin import BaseView, expose
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_login import current_user
from flask_wtf import FlaskForm
from werkzeug.security import check_password_hash
from wtforms import PasswordField
from wtforms.validators import DataRequired, EqualTo, Length

from admin import auth
from admin.accounts import set_password
from admin.extensions import db
from ops.errors import InvalidInput
from schema import Account


class PasswordForm(FlaskForm):
    current = PasswordField(_l("Current password"), validators=[DataRequired(), Length(max=200)])
    new = PasswordField(_l("New password"), validators=[DataRequired(), Length(max=200)])
    repeat = PasswordField(
        _l("New password again"),
        validators=[DataRequired(), EqualTo("new", message=_l("The two new passwords differ."))],
    )


class PasswordPage(BaseView):
    def is_accessible(self) -> bool:
        return current_user.is_authenticated and current_user.account_id is not None

    def inaccessible_callback(self, name, **kwargs):
        if not current_user.is_authenticated:
            return redirect(url_for("auth.login", next=request.full_path))
        abort(403)

    @expose("/", methods=("GET", "POST"))
    def index(self):
        form = PasswordForm()
        if form.validate_on_submit():
            account = db.session.get(Account, current_user.account_id)
            limits = auth.limiter("staff")
            if limits.name_locked(account.username):
                flash(_("Too many wrong passwords; try again later."), "error")
            elif not check_password_hash(account.password_hash, form.current.data):
                limits.failed(account.username, request.remote_addr)
                form.current.errors = [_("This is not your current password.")]
            else:
                try:
                    set_password(account, form.new.data)  # ends every session of the account
                except InvalidInput as exc:
                    form.new.errors = [str(exc)]
                else:
                    db.session.commit()
                    auth.start_session(auth.User.of_account(account))
                    flash(_("Your password is changed; your other sessions have ended."), "success")
                    return redirect(url_for("admin.index"))
        return self.render("password.html", form=form)
