"""Training the tiny models of the embedded world (CLIP pretraining, the retrain oracle)."""
