"""Optimizers (state keyed by parameter name) and learning-rate schedules (lr = schedule(t))."""
