"""Mixins of the list views: query-string arguments Flask-Admin passes on unchecked, and
the cells of their CSV exports."""

from __future__ import annotations


class ClampedPaging:
    """`?page=-5` became a negative OFFSET and a database error (HTTP 500): a page below 0 is
    the first page, a page size below 0 the default."""

    def _get_list_extra_args(self):
        args = super()._get_list_extra_args()
        if args.page is not None and args.page < 0:
            args.page = 0
        if args.page_size is not None and args.page_size < 0:
            args.page_size = 0
        return args


class SafeCsvExport:
    """Every cell of a list view's CSV export passes `rating.csv_safety.neutralise`."""

    def get_export_value(self, model, name):
        from rating.csv_safety import neutralise

        value = super().get_export_value(model, name)
        return neutralise(value if value is None or isinstance(value, str) else str(value))
