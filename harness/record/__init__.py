"""Inside one request: probes, the span tree and its walk, GPU timing, asyncio slices."""
