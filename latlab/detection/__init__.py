"""Detection accuracy harness: built-in data, YOLOv5-style training, own NMS, pycocotools mAP.

Public entry points::

    from latlab.detection import make_dataset, load_dataset, train, evaluate, mean_average_precision

Modules: ``synthetic`` (the shapes generator), ``data`` (datasets, loaders, label validation, letterbox),
``augment``, ``loss`` (YOLOv5 loss), ``nms``, ``metrics``, ``evaluate``, ``checkpoint``, ``device`` (where and in
which precision to train), ``train``.
"""

from latlab.detection import calibration  # registers the built-in images as the INT8 calibration source
from latlab.detection.data import DetectionData, Split, load_dataset, make_dataset
from latlab.detection.evaluate import evaluate, evaluate_checkpoint
from latlab.detection.metrics import mean_average_precision
from latlab.detection.nms import non_max_suppression
from latlab.detection.train import TrainResult, train

__all__ = [
           "DetectionData",
           "Split",
           "TrainResult",
           "calibration",
           "evaluate",
           "evaluate_checkpoint",
           "load_dataset",
           "make_dataset",
           "mean_average_precision",
           "non_max_suppression",
           "train",
]
