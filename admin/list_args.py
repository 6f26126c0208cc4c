"""Query-string arguments of the list views that Flask-Admin passes on unchecked."""

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
