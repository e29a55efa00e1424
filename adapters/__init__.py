"""Peers as hosts: run muxio handlers, unchanged, on asyncio, uvloop and Twisted.

Installed as the top-level `adapters` package beside `muxio` (see pyproject.toml).
Used by `muxio bench` to put the peers in columns beside muxio's own backends, and by
tests that check the same handler behaves the same everywhere.

    python -m adapters --loop asyncio --service echo --port 7007
"""
