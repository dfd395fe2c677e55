"""The delivery engine: key pool, priority queue, workers, and the channels that tell the buyer.

Delivery is one database transaction (`engine.py`); the channels (in-site, e-mail, SMS, webhook)
only announce it afterwards and never carry the keys, so a channel that fails costs a notice,
never a delivery.
"""
