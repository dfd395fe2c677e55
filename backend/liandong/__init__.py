"""链动小铺 Liandong: a self-hosted card-key shop paid through an on-chain escrow."""

__version__ = "0.1.0"
