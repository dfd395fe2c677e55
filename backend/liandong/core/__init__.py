"""Cross-cutting pieces every layer may use: the settings, bearer secrets, rate limits, crash points
for the fault tests, and the like.

The bottom layer: it imports nothing of the shop, so anything can depend on it without a cycle.
"""
