"""UnlearnCanvas: forgetting a style or an object in a text-to-image model.

``data`` reads the ``<Style>/<Object>/<n>.jpg`` grid and writes the forget tars, ``classifiers``
trains (tiny world) or loads (real run) the style and object judges, ``protocol`` turns judged
generations into UA / IRA / CRA, ``target`` runs SLUG for one style or object end to end.
"""
