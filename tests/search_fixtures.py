"""Shared test data for the search tests: a tiny space whose every point builds in milliseconds."""

TINY_SPACE = {
    "name": "tiny",
    "stem": {"type": ["CBRM"], "width": [8]},
    "stages": [{"name": "P3", "block": ["shufflenetv2", "pplcnet"], "depth": [1], "width": [16]},
               {"name": "P4", "block": ["ghost"], "depth": [1], "width": [32]},
               {"name": "P5", "block": ["mobilenetv2"], "depth": [1], "width": [32], "expansion": [2]}],
    "sppf": [False],
    "neck": {"width": [16], "depth": [1]},
}

# twelve points (stem type × P3 block × P4 block): enough for several distinct trials, each built in milliseconds
SMALL_SPACE = {
    "name": "small",
    "stem": {"type": ["CBRM", "Conv"], "width": [8]},
    "stages": [{"name": "P3", "block": ["shufflenetv2", "pplcnet", "c3"], "depth": [1], "width": [16]},
               {"name": "P4", "block": ["ghost", "mobilenetv3"], "depth": [1], "width": [32], "expansion": [2]},
               {"name": "P5", "block": ["mobilenetv2"], "depth": [1], "width": [32], "expansion": [2]}],
    "sppf": [False],
    "neck": {"width": [16], "depth": [1]},
}
