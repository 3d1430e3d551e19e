"""Held-out evaluation: zero-shot accuracy, membership inference, streamed sets, before and after."""
