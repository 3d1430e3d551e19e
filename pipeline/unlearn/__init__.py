"""SLUG: one gradient, one layer, one searched step; and the baselines it is compared with."""
