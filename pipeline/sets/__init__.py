"""Forget and retain sets: which shard samples show the concept, and the tars built from them."""
