"""Models: the fitted pipeline that turns features into a calibrated conversion probability.

``LeadScoringModel`` holds everything learned from data (encoder, estimators,
calibrator); ``split``, ``candidates``, ``calibration``, ``guards``, ``rules``
and ``metrics`` are the parts the training stage assembles it from.
"""
