"""Vision-language models: SLUG on a LLaVA's CLIP vision tower (the tower mapping, the tiny LLaVA,
the answer scorer, the retained sets and the held-out evaluation)."""
