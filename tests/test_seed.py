"""`asterbill seed`: a tenant tree from a file, idempotent, all or nothing, pushed to Redis."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import func, select

from lua.credit import CreditEngine, Payer
from lua.keys import Keys
from ops.errors import InvalidInput
from rating.book import RedisRateBook
from schema import AccountGroup, Clid, CustomerRate, Reseller, migrate
from schema.db import make_engine, session_factory
from workers.provision import SEED_KEYS, load_seed, provision_redis, seed

DEMO = Path(__file__).resolve().parents[1] / "ops" / "demo" / "seed.yaml"


@pytest.fixture
def factory(fresh_mysql_url):
    engine = make_engine(fresh_mysql_url)
    migrate.upgrade(engine)
    yield session_factory(engine)
    engine.dispose()


def counts(factory):
    with factory() as s:
        return tuple(
            s.scalar(select(func.count()).select_from(m))
            for m in (Reseller, AccountGroup, Clid, CustomerRate)
        )


def test_the_demo_seeds_twice_without_duplicates_and_reaches_redis(
    factory, redis_server, key_prefix
):
    data = load_seed(DEMO)
    for _ in range(2):
        with factory() as session, session.begin():
            seed(session, data, DEMO.parent)
    assert counts(factory) == (1, 1, 5, 4)

    keys = Keys(key_prefix)
    credit, book = CreditEngine(redis_server, keys), RedisRateBook(redis_server, keys)
    with factory() as session:
        assert provision_redis(session, credit, book) == 5
    payer = credit.find_payer("8003")
    assert isinstance(payer, Payer)
    booth = credit.level(payer.reseller_id, "clid", payer.clid_id)
    assert (booth.limit_type, booth.limit) == ("prepaid", 500_000)
    group = credit.level(payer.reseller_id, "group", payer.group_id)
    assert (group.limit_type, group.limit) == ("prepaid", 300_000_000)
    auth, _, pricing = credit.admit("8001", "00493012345678", book)
    assert auth.allowed and pricing.customer.destination == "Germany"
    assert pricing.callshop.per_minute == 80_000 and pricing.reseller.per_minute == 50_000
    deposit = credit.level(payer.reseller_id, "clid", credit.find_payer("8005").clid_id)
    assert deposit.deposit == 2_000_000


def test_a_bad_entry_seeds_nothing(factory, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(DEMO.read_text().replace('credit_limit: "0.5"', 'credit_limit: "-1"'))
    with (
        pytest.raises(InvalidInput, match="clid 8003 credit_limit"),
        factory() as session,
        session.begin(),
    ):
        seed(session, load_seed(bad), tmp_path)
    assert counts(factory) == (0, 0, 0, 0)


def test_a_file_that_is_not_a_tree_is_refused(tmp_path):
    path = tmp_path / "x.yaml"
    path.write_text("- just\n- a list\n")
    with pytest.raises(InvalidInput, match="expected a mapping"):
        load_seed(path)


ACCOUNTS = {
    "accounts": [
        {"username": "boss", "role": "admin", "password_env": "BOSS_PW"},
        {
            "username": "demo-owner",
            "role": "groupadmin",
            "group": "demo-shop",
            "password_env": "OWNER_PW",
        },
        {
            "username": "demo-seller",
            "role": "reseller",
            "reseller": "demo-reseller",
            "password_env": "SELLER_PW",
        },
    ]
}
PASSWORDS = {"BOSS_PW": "correct horse 1", "OWNER_PW": "battery staple", "SELLER_PW": "s" * 12}


def test_accounts_are_seeded_with_hashed_passwords_from_the_environment(factory):
    from werkzeug.security import check_password_hash

    from schema import Account

    data = {**load_seed(DEMO), **ACCOUNTS}
    for _ in range(2):
        with factory() as session, session.begin():
            seed(session, data, DEMO.parent, environ=PASSWORDS)
    with factory() as session:
        accounts = {a.username: a for a in session.scalars(select(Account))}
        group = session.scalar(select(AccountGroup))
    assert set(accounts) == {"boss", "demo-owner", "demo-seller"}
    owner = accounts["demo-owner"]
    assert (owner.role, owner.group_id, owner.reseller_id) == (
        "groupadmin",
        group.id,
        group.reseller_id,
    )
    assert owner.password_hash.startswith("scrypt:")
    assert check_password_hash(owner.password_hash, "battery staple")
    assert "battery" not in owner.password_hash


@pytest.mark.parametrize(
    ("account", "environ", "message"),
    [
        ({"username": "x", "role": "admin", "password": "in-the-file!"}, {}, "never kept"),
        ({"username": "x", "role": "admin", "password_env": "NOPE"}, {}, r"\$NOPE is not set"),
        ({"username": "x", "role": "admin"}, {}, "needs `password_env`"),
        ({"username": "x", "role": "operator", "password_env": "P"}, {"P": "p" * 12}, "`group`"),
        (
            {"username": "x", "role": "admin", "group": "demo-shop", "password_env": "P"},
            {"P": "p" * 12},
            "no reseller or group",
        ),
        ({"username": "x", "role": "root", "password_env": "P"}, {"P": "p" * 12}, "`group`"),
        ({"username": "x", "role": "admin", "password_env": "P"}, {"P": "short"}, "at least"),
        (
            {"username": "x", "role": "reseller", "reseller": "nobody", "password_env": "P"},
            {"P": "p" * 12},
            "unknown reseller",
        ),
    ],
)
def test_a_bad_account_seeds_nothing(factory, account, environ, message):
    data = {**load_seed(DEMO), "accounts": [account]}
    with pytest.raises(InvalidInput, match=message), factory() as session, session.begin():
        seed(session, data, DEMO.parent, environ=environ)
    assert counts(factory) == (0, 0, 0, 0)


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        (
            "name: demo-shop\n",
            "name: demo-shop\n        accountcode: shop1\n",
            "group demo-shop: unknown key accountcode",
        ),
        (
            '{clid: "8002", display: Booth 2}',
            '{clid: "8002", display: Booth 2, accountcode: shop1}',
            "clid 8002: unknown key accountcode",
        ),
        ("resellers:\n", "colour: blue\nresellers:\n", "the seed file: unknown key colour"),
        (
            "limit_type: prepaid\n    credit_limit",
            "limit_type: prepaid\n    creditlimit: 5\n    credit_limit",
            "reseller demo-reseller: unknown key creditlimit",
        ),
        (
            "- table: callshop\n",
            "- table: callshop\n    scope: x\n",
            "rates entry: unknown key scope",
        ),
        (
            '{clid: "8002", display: Booth 2}',
            '{clid: "8002", display: Booth 2, kind: phonebox}',
            "clid 8002: kind 'phonebox' is not one of booth, extension, card",
        ),
        (
            'rateinitial: "0.15"',
            'rateinitial: "0.15", connect: "0.1"',
            r"rates \(customer\) row 2: unknown key connect",
        ),
    ],
)
def test_unknown_keys_are_refused_and_seed_nothing(factory, tmp_path, old, new, message):
    bad = tmp_path / "bad.yaml"
    text = DEMO.read_text()
    assert old in text
    bad.write_text(text.replace(old, new, 1))
    with pytest.raises(InvalidInput, match=message), factory() as session, session.begin():
        seed(session, load_seed(bad), tmp_path)
    assert counts(factory) == (0, 0, 0, 0)


def test_reseeding_keeps_a_booths_lock_and_deposit_when_the_file_leaves_them_out(factory):
    data = load_seed(DEMO)
    with factory() as session, session.begin():
        seed(session, data, DEMO.parent)
        booth = session.scalar(select(Clid).where(Clid.clid == "8001"))
        booth.locked, booth.deposit = True, Decimal("5")  # set by an operator since
    with factory() as session, session.begin():
        seed(session, data, DEMO.parent)
    with factory() as s:
        booths = {c.clid: (c.locked, c.deposit) for c in s.scalars(select(Clid))}
    assert booths["8001"] == (True, Decimal("5"))  # kept: the file does not say
    assert booths["8005"] == (False, Decimal("2"))  # the file's deposit
    assert booths["8002"] == (False, None)

    unlocked = load_seed(DEMO)
    unlocked["resellers"][0]["groups"][0]["clids"][0].update(locked=False, deposit=None)
    with factory() as session, session.begin():
        seed(session, unlocked, DEMO.parent)
    with factory() as s:
        assert s.scalar(select(Clid).where(Clid.clid == "8001")).locked is False
        assert s.scalar(select(Clid.deposit).where(Clid.clid == "8001")) is None


def test_docs_seed_md_describes_every_key_a_seed_file_may_use():
    text = (DEMO.parents[2] / "docs" / "seed.md").read_text()
    for kind, keys in SEED_KEYS.items():
        missing = [k for k in sorted(keys) if f"`{k}`" not in text]
        assert missing == [], f"docs/seed.md does not describe {kind} keys {missing}"
    for kind in ("reseller", "group", "clid", "rates", "account"):
        assert kind in text.lower()
