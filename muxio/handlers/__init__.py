"""Floor 4: protocol handlers, written once against `muxio.protocols` only.

A handler module imports nothing of pollers, the loop or concrete transports (a test
checks this), so the same handler runs on every backend and transport, and on asyncio,
uvloop or Twisted through `adapters/`.
"""
