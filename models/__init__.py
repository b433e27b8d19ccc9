"""Models: the fitted pipeline that turns features into a calibrated conversion probability.

Filled by the training issue; the feature layer (``leadscore.features``) is its input.
"""
