"""The durable ledger: SQLAlchemy 2 models of the whole domain and their Alembic migrations.

MySQL/MariaDB (or SQLite for the embedded default) holds configuration (resellers, groups,
clids, accounts, rates) and the ledger (CDRs, credit operations and history). Money is
DECIMAL(18,6), billsec multiples DECIMAL(8,4). schema imports nothing of asterbill but
`ops.errors` and `ops.settings` types; everything else imports schema.
"""

from schema.base import Base
from schema.calls import Callback, Cdr
from schema.credit import CreditHistory, CreditOperation
from schema.dead_letters import DeadLetter
from schema.rates import CallshopRate, CustomerRate, ResellerRate
from schema.tenants import Account, AccountGroup, Clid, Reseller

__all__ = [
    "Account",
    "AccountGroup",
    "Base",
    "Callback",
    "CallshopRate",
    "Cdr",
    "Clid",
    "CreditHistory",
    "CreditOperation",
    "CustomerRate",
    "DeadLetter",
    "Reseller",
    "ResellerRate",
]
