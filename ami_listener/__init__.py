"""The AMI listener: asterbill's only contact with Asterisk.

A panoramisk (asyncio) client that follows every channel and call, and at dial, answer, each
billing-block boundary and hangup runs the credit engine's Lua scripts through `lua`; it
sends the AMI Hangup action when a script says the credit is gone. It never computes money.
May import lua, rating (read-only lookups), ops.settings and ops.errors; never schema.
"""
