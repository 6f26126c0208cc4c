"""Issue 13 points 8 and 9 through the back office: damaged files and odd query strings are
clear errors, never HTTP 500; large decks are previewed by a worker, within caps by setting."""

from __future__ import annotations

import html
import re
from pathlib import Path

from sqlalchemy import func, select

from schema import CustomerRate
from tests.conftest import REDIS_SERVER
from tests.test_back_office import login, office, token, upload_deck  # noqa: F401 (a fixture)

DECK = "prefix,dest,per minute,block\n"


def rates(factory) -> int:
    with factory() as s:
        return s.scalar(select(func.count()).select_from(CustomerRate))


def test_a_damaged_xls_in_the_preview_is_an_error_not_a_crash(office, tmp_path):  # noqa: F811
    import io

    import xlwt

    app = office[0]
    book = xlwt.Workbook()
    book.add_sheet("rates").write(0, 0, "prefix")
    book.save(str(tmp_path / "good.xls"))
    damaged = bytearray((tmp_path / "good.xls").read_bytes())
    damaged[0x4C:0x50] = b"\x00\x00\x00\xa0"  # the first MSAT entry: xlrd's CompDocError
    client = login(app, "resA")
    page = client.get("/admin/rate_import/").get_data(as_text=True)
    reply = client.post(
        "/admin/rate_import/",
        data={
            "table": "customer",
            "group": "0",
            "map_dialprefix": "prefix",
            "map_rateinitial": "2",
            "step": "preview",
            "csrf_token": token(page),
            "file": (io.BytesIO(bytes(damaged)), "deck.xls"),
        },
        content_type="multipart/form-data",
    )
    assert reply.status_code == 200
    assert "not a readable XLS file" in reply.get_data(as_text=True)


def test_a_negative_page_is_the_first_page(office):  # noqa: F811
    app = office[0]
    client = login(app, "root")
    for url in ("/admin/cdrs/?page=-5", "/admin/customer_rates/?page=-1&page_size=-3"):
        assert client.get(url).status_code == 200


def test_a_deck_past_the_size_cap_is_refused(office):  # noqa: F811
    app = office[0]
    app.config["ASTERBILL_IMPORT_MAX_BYTES"] = 1024
    client = login(app, "resA")
    deck = DECK + "".join(f"00{n},Place {n},0.1,60\n" for n in range(1000, 1200))
    reply = upload_deck(client, {"step": "preview"}, deck=deck)
    assert "larger than 1 KB" in reply.get_data(as_text=True)
    assert list(Path(app.config["ASTERBILL_UPLOADS"]).glob("*")) == []  # not kept


def test_a_deck_past_the_row_cap_is_refused(office):  # noqa: F811
    app = office[0]
    app.config["ASTERBILL_IMPORT_MAX_ROWS"] = 50
    client = login(app, "resA")
    deck = DECK + "".join(f"00{n},Place {n},0.1,60\n" for n in range(1000, 1100))
    reply = upload_deck(client, {"step": "preview"}, deck=deck)
    assert "more than 50 rows" in reply.get_data(as_text=True)


def test_a_large_deck_is_previewed_by_a_worker_then_imported(
    office,  # noqa: F811
    fresh_mysql_url,
    key_prefix,
    monkeypatch,
):
    from rq import SimpleWorker

    from workers.jobs import import_queue

    app, factory, _, _ = office
    app.config["ASTERBILL_BACKGROUND_IMPORT_BYTES"] = 100  # this deck counts as large
    monkeypatch.setenv("DATABASE_URL", fresh_mysql_url)  # the worker's settings
    monkeypatch.setenv("REDIS_URL", REDIS_SERVER)  # the one test Redis
    monkeypatch.setenv("ASTERBILL_KEY_PREFIX", key_prefix)
    client = login(app, "resA")
    deck = DECK + "".join(f"00{n},Place {n},0.1,60\n" for n in range(7000, 7200))
    before = rates(factory)

    reply = upload_deck(client, {"step": "preview"}, deck=deck)
    assert reply.status_code == 302 and "/admin/rate_import/job/" in reply.headers["Location"]
    redis = app.extensions["asterbill_redis"]
    worker = SimpleWorker(
        [import_queue(redis, app.config["ASTERBILL_KEY_PREFIX"])], connection=redis
    )
    worker.work(burst=True)

    page = html.unescape(client.get(reply.headers["Location"]).get_data(as_text=True))
    assert "Dry run: 200 new and 0 updated rate(s), from 200 row(s) read." in page
    assert "Place 7000" in page  # the preview
    assert rates(factory) == before  # a dry run writes nothing

    hidden = dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', page))
    done = client.post(
        "/admin/rate_import/", data={**hidden, "step": "import", "csrf_token": token(page)}
    )
    assert done.status_code == 302 and "/admin/rate_import/job/" in done.headers["Location"]
    worker.work(burst=True)
    assert "Imported: 200 new, 0 updated, from 200 row(s) read" in client.get(
        done.headers["Location"]
    ).get_data(as_text=True)
    assert rates(factory) == before + 200
