"""The migrations build the whole schema from zero, match the models, and round-trip."""

from datetime import datetime
from decimal import Decimal

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import insert, inspect
from sqlalchemy.exc import IntegrityError, OperationalError

import schema
from schema import migrate
from schema.db import make_engine

# MariaDB reports a failed CHECK as error 4025 (OperationalError), SQLite as IntegrityError.
REFUSED = (IntegrityError, OperationalError)

EXPECTED_UNIQUE = {
    "resellers": {("name",)},
    "account_groups": {("name",)},
    "clids": {("clid",), ("pin",)},
    "accounts": {("username",)},
    "customer_rates": {("dialprefix", "numlen", "reseller_id", "group_id")},
    "callshop_rates": {("dialprefix", "numlen", "reseller_id", "group_id")},
    "reseller_rates": {("dialprefix", "numlen", "reseller_id")},
    "cdrs": {("uniqueid", "leg")},
    "callbacks": {("action_id",)},
    "credit_operations": {("op_id",)},
    "credit_history": {("operation_id",)},
}
EXPECTED_FOREIGN = {
    "account_groups": {("reseller_id", "resellers")},
    "clids": {("group_id", "account_groups")},
    "accounts": {("reseller_id", "resellers"), ("group_id", "account_groups")},
    "cdrs": {
        ("clid_id", "clids"),
        ("group_id", "account_groups"),
        ("reseller_id", "resellers"),
        ("billed_by", "accounts"),
    },
    "callbacks": {("group_id", "account_groups"), ("clid_id", "clids"), ("account_id", "accounts")},
    "credit_operations": {("account_id", "accounts")},
    "credit_history": {
        ("operation_id", "credit_operations"),
        ("reseller_id", "resellers"),
        ("group_id", "account_groups"),
        ("clid_id", "clids"),
        ("account_id", "accounts"),
    },
}
EXPECTED_INDEXES = {  # what the reports, the booth page and the reconciler filter on
    "cdrs": {
        ("calldate",),
        ("group_id", "calldate"),
        ("reseller_id", "calldate"),
        ("clid_id", "billing_status", "calldate"),
        ("billing_status", "calldate"),
        ("linkedid",),
    },
    "credit_operations": {("applied_at",), ("level", "target_id")},
}


@pytest.fixture(params=["mariadb", "sqlite"])
def empty_database(request, tmp_path):
    if request.param == "sqlite":
        engine = make_engine(f"sqlite:///{tmp_path / 'schema.sqlite3'}")
    else:
        engine = make_engine(request.getfixturevalue("fresh_mysql_url"))
    yield engine
    engine.dispose()


def unique_keys(insp, table):
    keys = {tuple(u["column_names"]) for u in insp.get_unique_constraints(table)}
    # MariaDB reports unique keys as unique indexes too; SQLite only as constraints.
    keys |= {tuple(i["column_names"]) for i in insp.get_indexes(table) if i["unique"]}
    return keys


def test_upgrade_builds_every_table_key_and_index_then_downgrade_removes_them(empty_database):
    engine = empty_database
    assert migrate.current_revision(engine) is None

    migrate.upgrade(engine)

    assert migrate.current_revision(engine) == migrate.head_revision()
    insp = inspect(engine)
    assert set(insp.get_table_names()) == set(schema.Base.metadata.tables) | {"alembic_version"}
    for table, keys in EXPECTED_UNIQUE.items():
        assert unique_keys(insp, table) >= keys, table
    for table, fks in EXPECTED_FOREIGN.items():
        found = {
            (fk["constrained_columns"][0], fk["referred_table"])
            for fk in insp.get_foreign_keys(table)
        }
        assert found == fks, table
    for table, indexes in EXPECTED_INDEXES.items():
        assert {tuple(i["column_names"]) for i in insp.get_indexes(table)} >= indexes, table

    migrate.downgrade(engine, "base")

    assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
    assert migrate.current_revision(engine) is None


def test_the_migrations_match_the_models(empty_database):
    migrate.upgrade(empty_database)
    with empty_database.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), schema.Base.metadata)
    assert diff == []


def test_money_is_stored_exactly_to_the_micro_unit(db):
    reseller = schema.Reseller(name="r1", creditlimit=Decimal("1234567890.123456"))
    db.add(reseller)
    db.commit()
    db.expire_all()
    stored = db.get(schema.Reseller, reseller.id)
    assert stored.creditlimit == Decimal("1234567890.123456")
    assert stored.multiple == Decimal("1.0000") and stored.limit_type == "none"


@pytest.mark.parametrize(
    ("row", "constraint"),
    [
        ({"billingblock": 0}, "ck_customer_rates_blocks"),
        ({"connectcharge": Decimal("-0.1")}, "ck_customer_rates_money"),
        ({"numlen": -1}, "ck_customer_rates_numlen"),
    ],
)
def test_the_database_refuses_impossible_rates(db, row, constraint):
    values = {
        "dialprefix": "0049",
        "numlen": 0,
        "connectcharge": 0,
        "rateinitial": 1,
        "billingblock": 60,
        "created_at": datetime(2026, 1, 1),
    } | row
    with pytest.raises(REFUSED, match=constraint):
        db.execute(insert(schema.CustomerRate).values(**values))


def test_a_rate_is_unique_per_prefix_length_and_scope(db):
    values = {
        "dialprefix": "0049",
        "numlen": 0,
        "connectcharge": 0,
        "rateinitial": 1,
        "billingblock": 60,
        "reseller_id": 3,
        "group_id": 0,
        "created_at": datetime(2026, 1, 1),
    }
    db.execute(insert(schema.CustomerRate).values(**values))
    db.execute(insert(schema.CustomerRate).values(**(values | {"numlen": 13})))
    db.execute(insert(schema.CallshopRate).values(**values))  # other table: allowed
    with pytest.raises(IntegrityError):
        db.execute(insert(schema.CustomerRate).values(**values))


def test_an_account_role_must_match_its_scope(db):
    db.add(schema.Account(username="x", password_hash="h", role="operator"))
    with pytest.raises(REFUSED, match="role_scope"):
        db.flush()
