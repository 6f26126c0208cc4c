"""`asterbill rates ...` end to end: real processes, a fresh MariaDB, the local Redis."""

from __future__ import annotations

import subprocess
import threading

import pytest
from sqlalchemy import func, select

from lua.keys import Keys
from rating.book import RedisRateBook
from schema import CustomerRate, migrate
from schema.db import make_engine, session_factory
from tests.conftest import REDIS_SERVER
from tests.tenants import make_tenant
from tests.test_cli import ASTERBILL, run


@pytest.fixture
def tenant_db(fresh_mysql_url, key_prefix):
    engine = make_engine(fresh_mysql_url)
    migrate.upgrade(engine)
    with session_factory(engine)() as session, session.begin():
        booth = make_tenant(session, customer_multiple=1)
        ids = (booth.group.reseller_id, booth.group_id)
    env = {
        "DATABASE_URL": fresh_mysql_url,
        "REDIS_URL": REDIS_SERVER,
        "ASTERBILL_KEY_PREFIX": key_prefix,
    }
    yield engine, env, ids
    engine.dispose()


def count(engine) -> int:
    with engine.connect() as conn:
        return conn.scalar(select(func.count()).select_from(CustomerRate))


def test_import_quote_export_delete(tenant_db, tmp_path, redis_server, key_prefix):
    engine, env, (reseller, group) = tenant_db
    path = tmp_path / "deck.csv"
    path.write_text("prefix,country,price\n0049,Germany,0.4\n0044,UK,0.2\n")
    args = [
        "rates",
        "import",
        str(path),
        "--table",
        "customer",
        "--reseller",
        str(reseller),
        "--group",
        str(group),
        "--map",
        "dialprefix=prefix",
        "--map",
        "destination=2",
        "--map",
        "rateinitial=price",
    ]

    dry = run(*args, "--dry-run", env=env, cwd=tmp_path)
    assert dry.returncode == 0 and "nothing written" in dry.stdout and count(engine) == 0

    done = run(*args, env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "imported 2 new" in done.stdout and count(engine) == 2
    book = RedisRateBook(redis_server, Keys(key_prefix))
    assert book.lookup("00441234", reseller, group)["customer"].destination == "UK"

    quoted = run("rates", "quote", "0049301234567", "--clid", "8001", env=env, cwd=tmp_path)
    assert quoted.returncode == 0, quoted.stderr
    assert "customer  rate" in quoted.stdout and "'Germany'" in quoted.stdout
    assert "60 s: 0.40" in quoted.stdout and "reseller  no rate" in quoted.stdout

    exported = run("rates", "export", "--table", "customer", env=env, cwd=tmp_path)
    assert exported.stdout.splitlines()[0].startswith("id,table,dialprefix,numlen")
    (tmp_path / "book.csv").write_text(exported.stdout)
    selected = subprocess.run(
        [ASTERBILL, "rates", "select", "--book", str(tmp_path / "book.csv")],
        input=f"number,resellerid,groupid\n0049301,{reseller},{group}\n",
        capture_output=True,
        text=True,
        check=True,
    )
    assert selected.stdout.splitlines()[1].split(",")[3] != ""  # a customer rate id

    refused = run("rates", "delete", "--table", "customer", env=env, cwd=tmp_path)
    assert refused.returncode == 2 and "confirm with --all" in refused.stderr
    deleted = run(
        "rates", "delete", "--table", "customer", "--prefix", "0044", env=env, cwd=tmp_path
    )
    assert "deleted 1 customer rate(s)" in deleted.stdout and count(engine) == 1
    assert book.lookup("00441234", reseller, group)["customer"] is None


def test_a_bad_file_changes_nothing_and_says_why(tenant_db, tmp_path):
    engine, env, (reseller, _group) = tenant_db
    path = tmp_path / "deck.csv"
    path.write_text("dialprefix,rateinitial,billingblock\n0049,0.4,60\n0033,-1,60\n0044,1,0\n")
    result = run(
        "rates",
        "import",
        str(path),
        "--table",
        "customer",
        "--reseller",
        str(reseller),
        env=env,
        cwd=tmp_path,
    )
    assert result.returncode == 2
    assert "row 3: rateinitial '-1' is negative" in result.stderr
    assert "row 4: billingblock 0" in result.stderr
    assert "Traceback" not in result.stderr
    assert count(engine) == 0


def test_a_reader_sees_none_or_all_of_an_import(tenant_db, tmp_path):
    engine, env, _ids = tenant_db
    rows = 30_000
    path = tmp_path / "big.csv"
    path.write_text("dialprefix,rateinitial\n" + "".join(f"{10**7 + i},0.1\n" for i in range(rows)))
    seen: set[int] = set()
    stop = threading.Event()

    def reader():
        while not stop.is_set():
            seen.add(count(engine))

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        result = run("rates", "import", str(path), "--table", "customer", env=env, cwd=tmp_path)
    finally:
        stop.set()
        thread.join()
    assert result.returncode == 0, result.stderr
    assert seen <= {0, rows} and count(engine) == rows
