"""The audit trail: events chained by MAC, recorded per vault, listed and exported."""
