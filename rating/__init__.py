"""The rating engine's pure Python reference and its services.

`money`, `price` and `select` are pure (no I/O): exact prices in integer micro-units and the
rate-selection rules of DESIGN.md section 3. `book` keeps rate books in Redis for the Lua twin
(lua/lookupRates.lua, lua/include/price.lua); `imports` reads rate files all-or-nothing.
rating may import schema, lua and ops.errors; never admin, workers or ami_listener.
"""
