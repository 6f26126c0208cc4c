"""The atomic Redis scripts that price calls and move live balances, and the one Python module
per concern that knows their key names and result codes.

One .lua file per operation, named after the verb and its key count, opening with a contract
header. Keys are always passed in KEYS (never built inside a script) and share one hash tag
per reseller, so the scripts run unchanged on Redis Cluster. May import rating and ops.errors.
"""
