"""The back office's dead letters: a read-only list for administrators only."""

from __future__ import annotations

from decimal import Decimal

from schema import DeadLetter
from tests.test_back_office import login, office  # noqa: F401  (the fixture)


def test_dead_letters_are_listed_read_only_for_admins_only(office):  # noqa: F811
    app, factory, _, ids = office
    with factory() as s, s.begin():
        s.add(
            DeadLetter(
                call_key="k" * 64,
                call_id="poison-call-1",
                reseller_id=ids["resellerA"],
                credit=Decimal("0.8"),
                raw_record="1,2,3",
                raw_meta='{"channel": "<script>x</script>"}',
                error="DataError: (1406, \"Data too long for column 'channel'\")",
            )
        )
    root = login(app, "root")
    page = root.get("/admin/dead_letters/").get_data(as_text=True)
    assert "poison-call-1" in page and "Data too long" in page
    for user in ("resA", "gaA1", "opA1"):
        assert login(app, user).get("/admin/dead_letters/").status_code == 403, user
    # no form to create, edit or delete one
    assert root.get("/admin/dead_letters/new/").status_code in (302, 403, 404)
    assert root.get("/admin/dead_letters/edit/?id=1").status_code in (302, 403, 404)
    with factory() as s:
        assert s.get(DeadLetter, 1).call_id == "poison-call-1"
    details = root.get("/admin/dead_letters/details/?id=1").get_data(as_text=True)
    assert "&lt;script&gt;" in details and "<script>x" not in details
