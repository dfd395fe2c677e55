"""The card-key vault: keys are encrypted at rest and only their commitments go on-chain."""
