"""Detection datasets: the built-in shapes set and loaders for YOLO (ultralytics data YAML), COCO JSON and
Pascal VOC data, all returning a :class:`DetectionData`; letterboxed tensors and batches for training.

Modules: ``dataset`` (Split, DetectionData, image decoding), ``builtin``, ``yolo``, ``coco``, ``voc``,
``formats`` (which loader reads a path: :func:`load_dataset`), ``loader`` (letterbox, collate, BatchLoader).
"""

from latlab.detection.data.builtin import BUILTIN, DATA_ROOT, builtin_dir, load_builtin_dir, make_dataset
from latlab.detection.data.coco import load_coco, parse_coco
from latlab.detection.data.dataset import IMG_SUFFIXES, DetectionData, Split, read_image
from latlab.detection.data.formats import FORMATS, DataFormat, detect_format, load_dataset
from latlab.detection.data.loader import (
    PAD_VALUE,
    Batch,
    BatchLoader,
    LetterboxDataset,
    UnreadableImage,
    collate,
    letterbox,
)
from latlab.detection.data.voc import VOC_NAMES, load_voc, parse_voc_xml
from latlab.detection.data.yolo import label_path_for, load_yolo, parse_yolo_label_file

__all__ = ["BUILTIN", "DATA_ROOT", "FORMATS", "IMG_SUFFIXES", "PAD_VALUE", "VOC_NAMES", "Batch", "BatchLoader",
           "DataFormat", "DetectionData", "LetterboxDataset", "Split", "UnreadableImage", "builtin_dir", "collate",
           "detect_format", "label_path_for", "letterbox", "load_builtin_dir", "load_coco", "load_dataset",
           "load_voc", "load_yolo", "make_dataset", "parse_coco", "parse_voc_xml", "parse_yolo_label_file",
           "read_image"]
