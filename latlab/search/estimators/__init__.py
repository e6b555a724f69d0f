"""Accuracy estimators (see :mod:`latlab.search.estimators.base`). Importing this package imports every
module in it, which registers its estimators: a new estimator file needs no edit here."""

import importlib
import pkgutil

from latlab.search.estimators.base import (
    AccuracyEstimator,
    Estimate,
    EstimatorContext,
    EstimatorSpec,
    get_estimator_class,
    list_estimators,
    make_estimator,
    parse_estimator,
    register_estimator,
    unregister_estimator,
)

for _module in sorted(m.name for m in pkgutil.iter_modules(__path__)):
    importlib.import_module(f"{__name__}.{_module}")

__all__ = ["AccuracyEstimator", "Estimate", "EstimatorContext", "EstimatorSpec", "get_estimator_class",
           "list_estimators", "make_estimator", "parse_estimator", "register_estimator", "unregister_estimator"]
