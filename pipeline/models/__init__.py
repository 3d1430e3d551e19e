"""Models: the open_clip factory (``factory``: build from a name and weights, tiny configs in
``configs/``) and where a tensor sits in a CLIP (``structure``)."""
