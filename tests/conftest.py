"""Shared pytest set-up. Contract tests run through ape's pytest plugin, which starts anvil
(ape-foundry, `host: auto` picks a free port) and isolates each test with snapshots."""
