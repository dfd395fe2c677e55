"""The API's routes, one module per audience or area: the buyer's shop, the merchant's account,
catalogue, orders, funds and figures, and the web pages.

Each module holds an `APIRouter` that `api/app.py` mounts; none imports another, so an area can be
read, changed or left out on its own.
"""
