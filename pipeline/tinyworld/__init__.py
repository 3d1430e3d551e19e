"""The embedded tiny world: synthetic concepts, captions and images in the real data formats."""
