"""RQ jobs: settle ended calls into MySQL (CDRs, balances, lifetime totals) exactly once in
effect, apply credit operations, and reconcile Redis with MySQL.

May import schema, lua, rating, ops.settings and ops.errors; never admin or ami_listener.
"""
