"""What the pages are made of: Jinja templates, static assets and every text in both languages
(`texts`). No Python here imports the API: the page routes that render these live with the other
routes, in `liandong.api.routes.pages`."""
