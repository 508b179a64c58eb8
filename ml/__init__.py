"""Features, labels, training, tuning, registry access and model serving for the self-improvement loop.

Import submodules directly (``ml.features``, ``ml.serving``...): heavy libraries (MLflow, AutoGluon,
Optuna) are imported only by the modules that need them.
"""
