"""A running shop: `node.assemble` builds a node's parts from the settings and the deployment
record (the one composition root), `Node.run` runs them, `cluster` lets several nodes share one
PostgreSQL database with one leader."""
