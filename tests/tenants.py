"""A small tenant tree for tests: reseller -> group (callshop) -> booth."""

from __future__ import annotations

from sqlalchemy.orm import Session

from schema import AccountGroup, Clid, Reseller


def make_tenant(session: Session, name: str = "r1", clid: str = "8001", **group_fields) -> Clid:
    reseller = Reseller(name=f"{name}-reseller")
    group = AccountGroup(name=f"{name}-shop", reseller=reseller, **group_fields)
    booth = Clid(clid=clid, pin=f"{clid}000000", group=group, display=f"Booth {clid}")
    session.add_all([reseller, group, booth])
    session.flush()
    return booth
