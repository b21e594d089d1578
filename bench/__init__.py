"""`make bench`: AWS calls, warm time, cold start, package size, sweep scaling, memory (issue 8)."""
