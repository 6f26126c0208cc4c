"""Rate decks: upload (CSV / XLS / XLSX), map columns (the last mapping is remembered per
account), preview and dry-run with every error listed, then import all or nothing through the
same service as `asterbill rates import`; export a scope as CSV; delete matching rows.

Which table and scope a user may write is checked on the server (admin: any; a reseller: its
customer and callshop rates, for all its shops or one of them; a groupadmin: its shop's
customer rates). The uploaded file is kept under the data directory between preview and
import, named by a random token, and removed after the import.
"""

from __future__ import annotations

import io
import json
import secrets
import time
from pathlib import Path

from flask import Response, abort, current_app, flash, redirect, request, url_for
from flask_admin import BaseView, expose
from flask_babel import gettext
from flask_babel import lazy_gettext as _l
from flask_login import current_user
from flask_wtf import FlaskForm
from flask_wtf.file import FileAllowed, FileField
from sqlalchemy import select
from wtforms import BooleanField, HiddenField, SelectField, StringField
from wtforms.validators import Length, Optional

from admin import scope
from admin.extensions import db
from ops.errors import InvalidInput
from rating import csvfiles, ratefiles
from rating.store import Target, book_rows, delete_matching, import_rates, sync_scope
from schema import AccountGroup, Reseller

TABLES_OF_ROLE = {
    "admin": ("customer", "callshop", "reseller"),
    "reseller": ("customer", "callshop"),
    "groupadmin": ("customer",),
}
PREVIEW_ROWS = 10
UPLOAD_TTL_S = 3600
MAX_ROWS = "ASTERBILL_IMPORT_MAX_ROWS"


class ImportForm(FlaskForm):
    table = SelectField(_l("Table"))
    reseller = SelectField(_l("Reseller"), coerce=int)
    group = SelectField(_l("Shop"), coerce=int)
    file = FileField(_l("Rate file"), validators=[FileAllowed(["csv", "txt", "xls", "xlsx"])])
    upload = HiddenField()
    replace = BooleanField(_l("Update rates that exist already"))
    prefix = StringField(
        _l("Delete: dial prefix starts with"), validators=[Optional(), Length(max=32)]
    )


for _field in ratefiles.FIELDS:  # one mapping box per rate field
    setattr(
        ImportForm,
        f"map_{_field}",
        StringField(
            _l("Column for %(field)s", field=_field), validators=[Optional(), Length(max=40)]
        ),
    )


def allowed_target(user, target: Target) -> bool:
    if target.table not in TABLES_OF_ROLE.get(user.role, ()):
        return False
    if user.role == "admin":
        return True
    if target.reseller_id != user.reseller_id:
        return False
    if user.role == "groupadmin":
        return target.group_id == user.group_id
    return (
        target.group_id == 0
        or db.session.scalar(
            select(AccountGroup.id).where(
                AccountGroup.id == target.group_id, AccountGroup.reseller_id == user.reseller_id
            )
        )
        is not None
    )


class RateImportPage(BaseView):
    def is_accessible(self) -> bool:
        return current_user.is_authenticated and current_user.role in TABLES_OF_ROLE

    def inaccessible_callback(self, name, **kwargs):
        if not current_user.is_authenticated:
            return redirect(url_for("auth.login"))
        abort(403)

    def _form(self) -> ImportForm:
        form = ImportForm()
        user = current_user
        form.table.choices = [(t, t) for t in TABLES_OF_ROLE[user.role]]
        resellers = db.session.scalars(
            select(Reseller).where(scope.visible(Reseller, user)).order_by(Reseller.name)
        ).all()
        form.reseller.choices = (
            [(0, "all resellers (global)")] if user.role == "admin" else []
        ) + [(r.id, r.name) for r in resellers]
        groups = db.session.scalars(
            select(AccountGroup)
            .where(scope.visible(AccountGroup, user))
            .order_by(AccountGroup.name)
        ).all()
        form.group.choices = [(0, "all shops")] + [(g.id, g.name) for g in groups]
        # Scope fields a role does not choose are not in its form at all: its own are used.
        if user.role != "admin":
            del form.reseller
        if user.role == "groupadmin":
            del form.group
        if request.method == "GET":
            for field, column in self._remembered().items():
                getattr(form, f"map_{field}").data = column
        return form

    def _target(self, form: ImportForm) -> Target:
        user = current_user
        reseller_id = form.reseller.data if user.role == "admin" else user.reseller_id
        group_id = form.group.data if user.role != "groupadmin" else user.group_id
        if form.table.data == "reseller":
            group_id = 0
        target = Target(form.table.data, reseller_id or 0, group_id or 0)
        if not allowed_target(user, target):
            abort(403)
        return target

    @expose("/", methods=("GET", "POST"))
    def index(self):
        form = self._form()
        context = {"form": form, "preview": None, "errors": None, "summary": None}
        if request.method == "POST" and not form.validate_on_submit():
            context["errors"] = "; ".join(
                f"{getattr(form, name).label.text}: {' '.join(errs)}"
                for name, errs in form.errors.items()
            )
        elif request.method == "POST":
            step = request.form.get("step", "preview")
            target = self._target(form)
            if step == "delete":
                return self._delete(form, target)
            try:
                path = self._upload(form)
                mapping = self._mapping(form)
                if step == "import":
                    return self._import(path, mapping, target, form.replace.data)
                if self._large(path):  # parsed by a worker, not in this request
                    return self._import_in_background(
                        path, mapping, target, form.replace.data, dry_run=True
                    )
                context.update(self._dry_run(path, mapping, target, form.replace.data))
                form.upload.data = path.name
            except InvalidInput as exc:
                context["errors"] = str(exc)
        return self.render("rate_import.html", **context)

    def _upload(self, form: ImportForm) -> Path:
        folder = Path(current_app.config["ASTERBILL_UPLOADS"])
        folder.mkdir(parents=True, exist_ok=True)
        for old in folder.glob("*"):
            if old.stat().st_mtime < time.time() - UPLOAD_TTL_S:
                old.unlink(missing_ok=True)
        if form.file.data:
            suffix = Path(form.file.data.filename or "").suffix.lower()
            path = folder / f"{secrets.token_hex(16)}{suffix}"
            form.file.data.save(path)
            limit = current_app.config["ASTERBILL_IMPORT_MAX_BYTES"]
            if path.stat().st_size > limit:
                path.unlink(missing_ok=True)
                raise InvalidInput(
                    f"the file is larger than {limit // 1024} KB (ASTERBILL_IMPORT_MAX_BYTES)"
                )
            return path
        token = form.upload.data or ""
        path = folder / token
        if not token or "/" in token or not path.is_file():
            raise InvalidInput("choose a rate file")
        return path

    def _mapping(self, form: ImportForm) -> dict[str, str]:
        mapping = {
            f: getattr(form, f"map_{f}").data.strip()
            for f in ratefiles.FIELDS
            if getattr(form, f"map_{f}").data and getattr(form, f"map_{f}").data.strip()
        }
        mapping = ratefiles.parse_mapping(mapping)
        redis = current_app.extensions["asterbill_redis"]
        redis.set(self._mapping_key(), json.dumps(mapping), ex=365 * 24 * 3600)
        return mapping

    def _remembered(self) -> dict[str, str]:
        raw = current_app.extensions["asterbill_redis"].get(self._mapping_key())
        return json.loads(raw) if raw else {}

    def _mapping_key(self) -> str:
        prefix = current_app.config["ASTERBILL_KEY_PREFIX"]
        return f"{prefix}:import-mapping:{current_user.account_id}"

    def _rows(self, path: Path, mapping: dict[str, str]):
        max_rows = current_app.config[MAX_ROWS]
        return ratefiles.mapped_rows(ratefiles.read_cells(path, max_rows=max_rows), mapping)

    def _large(self, path: Path) -> bool:
        return path.stat().st_size > current_app.config["ASTERBILL_BACKGROUND_IMPORT_BYTES"]

    def _dry_run(self, path: Path, mapping, target: Target, replace: bool) -> dict:
        preview = []
        for number, cells in self._rows(path, mapping):
            preview.append((number, cells))
            if len(preview) >= PREVIEW_ROWS:
                break
        session = db.session
        try:
            report = import_rates(session, target, self._rows(path, mapping), replace=replace)
            summary = gettext(
                "Dry run: %(new)d new and %(updated)d updated rate(s), from %(read)d row(s) read.",
                new=report.inserted,
                updated=report.updated,
                read=report.read,
            )
        finally:
            session.rollback()  # a dry run writes nothing
        return {"preview": preview, "summary": summary, "fields": ratefiles.FIELDS}

    def _import(self, path: Path, mapping, target: Target, replace: bool):
        if self._large(path):
            return self._import_in_background(path, mapping, target, replace)
        session = db.session
        try:
            report = import_rates(session, target, self._rows(path, mapping), replace=replace)
            session.commit()
        except Exception:
            session.rollback()
            raise
        sync_scope(session, current_app.extensions["asterbill_book"], target)
        path.unlink(missing_ok=True)
        flash(
            gettext(
                "Imported into %(table)s rates: %(new)d new, %(updated)d updated, "
                "from %(read)d row(s) read; live at once.",
                table=gettext(target.table),
                new=report.inserted,
                updated=report.updated,
                read=report.read,
            ),
            "success",
        )
        return redirect(url_for(f"{target.table}_rates.index_view"))

    def _import_in_background(
        self, path: Path, mapping, target: Target, replace: bool, dry_run: bool = False
    ):
        """A large deck is previewed and imported by a worker (the same service, all or
        nothing); the page shows how far it got, and after a dry run offers the import."""
        from workers.jobs import import_queue, import_rate_deck

        queue = import_queue(
            current_app.extensions["asterbill_redis"], current_app.config["ASTERBILL_KEY_PREFIX"]
        )
        job = queue.enqueue_call(
            import_rate_deck,
            args=(str(path), mapping, target.table, target.reseller_id, target.group_id, replace),
            kwargs={"dry_run": dry_run, "max_rows": current_app.config[MAX_ROWS]},
            timeout=1800,
            result_ttl=24 * 3600,
            failure_ttl=7 * 24 * 3600,
            meta={
                "account_id": current_user.account_id,
                "table": target.table,
                "read": 0,
                # what the import step posts again after a dry run (the same form)
                "form": {
                    "table": target.table,
                    "reseller": target.reseller_id,
                    "group": target.group_id,
                    "upload": path.name,
                    "replace": "y" if replace else "",
                    **{f"map_{f}": c for f, c in mapping.items()},
                },
            },
            description=f"{'dry run of' if dry_run else 'import'} {path.name} "
            f"into {target.table} rates",
        )
        return redirect(url_for(".job", job_id=job.id))

    @expose("/job/<job_id>")
    def job(self, job_id: str):
        from rq.exceptions import NoSuchJobError
        from rq.job import Job

        try:
            job = Job.fetch(job_id, connection=current_app.extensions["asterbill_redis"])
        except NoSuchJobError:
            abort(404)
        if job.meta.get("account_id") != current_user.account_id:
            abort(404)  # another user's import
        status = job.get_status()
        result = job.return_value() if status == "finished" else None
        return self.render(
            "rate_import_job.html",
            job=job,
            status=status,
            result=result,
            fields=ratefiles.FIELDS,
            import_form=FlaskForm(),  # its CSRF token, for "Import all" after a dry run
        )

    def _delete(self, form: ImportForm, target: Target):
        if request.form.get("confirmed") != "yes":
            return self.render(
                "rate_import.html",
                form=form,
                confirm_delete=target,
                preview=None,
                errors=None,
                summary=None,
            )
        session = db.session
        try:
            count, touched = delete_matching(
                session,
                target.table,
                target.reseller_id,
                target.group_id if target.table != "reseller" else None,
                (form.prefix.data or "").strip() or None,
            )
            session.commit()
        except InvalidInput as exc:
            session.rollback()
            flash(str(exc), "error")
            return redirect(url_for(".index"))
        for scope_ in touched:
            sync_scope(session, current_app.extensions["asterbill_book"], scope_)
        flash(
            gettext(
                "Deleted %(count)d %(table)s rate(s).", count=count, table=gettext(target.table)
            ),
            "success",
        )
        return redirect(url_for(".index"))

    @expose("/export")
    def export(self):
        user = current_user
        table = request.args.get("table", "customer")
        reseller_id = request.args.get("reseller", type=int, default=0)
        group_id = request.args.get("group", type=int, default=0)
        if user.role != "admin":
            reseller_id = user.reseller_id
        if user.role == "groupadmin":
            group_id = user.group_id
        target = Target(table, reseller_id, 0 if table == "reseller" else group_id)
        if table not in TABLES_OF_ROLE.get(user.role, ()) or not allowed_target(user, target):
            abort(403)
        out = io.StringIO()
        rows = book_rows(db.session, target.table, target.reseller_id, target.group_id)
        csvfiles.write_rows(out, list(csvfiles.BOOK_HEADER), map(csvfiles.book_row_cells, rows))
        name = f"{table}-rates-r{target.reseller_id}-g{target.group_id}.csv"
        return Response(
            out.getvalue(),
            mimetype="text/csv",
            headers={"Content-Disposition": f"attachment; filename={name}"},
        )
