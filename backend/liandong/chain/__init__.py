"""Everything that talks to the chain: the escrow's typed data, deployments, the local node."""
