"""The web pages: storefront, order page and merchant dashboard, with their static assets."""
