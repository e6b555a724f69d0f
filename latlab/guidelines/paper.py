"""The published numbers of ShuffleNet V2's guideline experiments (Tables 1-4) and its Table 5, as data.

Source: Ningning Ma, Xiangyu Zhang, Hai-Tao Zheng, Jian Sun, "ShuffleNet V2: Practical Guidelines for
Efficient CNN Architecture Design", ECCV 2018, arXiv:1807.11164 (:data:`CITATION`). Every number below is
the paper's. What the paper leaves open, and how latlab reads it, is in :data:`NOTES`; those readings are
ours, not the paper's.

Throughputs are stored in the paper's units: GPU columns in batches/s, ARM ("CPU" in Tables 2-4) columns in
images/s. ``values[platform][w]`` is the value for width multiplier ``w`` ∈ {1, 2, 4}: Tables 1 and 2
label their columns ×1/×2/×4; Tables 3 and 4 label them by channel count (c = 64/128/256 and 32/64/128 on
ARM), which are the ×1 value times 1, 2, 4, so latlab indexes all four tables the same way.
"""

from __future__ import annotations

from dataclasses import dataclass, field

CITATION = ("Ma, N., Zhang, X., Zheng, H.-T., Sun, J.: ShuffleNet V2: Practical Guidelines for Efficient CNN "
            "Architecture Design. ECCV 2018. arXiv:1807.11164")
ARXIV = "https://arxiv.org/abs/1807.11164"

PLATFORMS = ("gpu", "arm")
WIDTHS = (1, 2, 4)
UNITS = {"gpu": "batches/s", "arm": "images/s"}
# Column labels as printed: Table 1 says "ARM", Tables 2-4 say "CPU" for the same Snapdragon 810 platform.
PLATFORM_LABEL = {"G1": {"gpu": "GPU", "arm": "ARM"}, "G2": {"gpu": "GPU", "arm": "CPU"},
                  "G3": {"gpu": "GPU", "arm": "CPU"}, "G4": {"gpu": "GPU", "arm": "CPU"}}

SETUP = {
    "gpu": "single NVIDIA GeForce GTX 1080Ti, CUDNN 7.0 with its benchmarking function on",
    "arm": "Qualcomm Snapdragon 810, highly-optimized Neon-based implementation, a single thread",
    "software": "in-house CNN library, full optimization options (e.g. tensor fusion) on",
    "runs": "each network randomly initialized and evaluated 100 times; the average runtime is used",
    "flops": "FLOPs = multiply-adds (footnote 1, following ShuffleNet v1)",
}

NOTES: dict[str, str] = {
    "widths": "Our reading: ×2 and ×4 mean the ×1 channel counts scaled by 2 and 4 (FLOPs ~4× and ~16×). The "
              "paper gives channel counts 'for ×1' only and never defines ×2/×4; the reading fits Table 2's "
              "g=1 row matching Table 3's 1-fragment row at c, 2c, 4c on both platforms.",
    "arm_label": "Table 1 labels the right-hand block 'ARM (Images/sec.)'; Tables 2-4 label the same platform "
                 "'CPU (Images/sec.)'. The text calls it ARM (Snapdragon 810, one thread).",
    "batch_arm": "ARM batch size 1 (stated for Fig. 1 and Table 8; not restated for Tables 1-4).",
    "batch_gpu": "GPU batch size for Tables 1-4 is not stated (Fig. 1 / Table 8 use 8). Our reading: 1. At "
                 "batch 8, Table 3's c=512 1-fragment row (434 batches/s × 10·512²·56² = 8.2 G multiply-adds "
                 "per image) would need 57 TFLOP/s, five times a GTX 1080Ti's ~11.3 TFLOP/s fp32 peak; at "
                 "batch 1 it needs 7.1 TFLOP/s.",
    "input": "Tables 1-3: 56×56 input (captions). Table 4 gives no input size; latlab uses 56×56 too.",
    "g4_c": "Our reading of Table 4's c: the unit's input/output channels, bottleneck width c/4 (ResNet's "
            "expansion 4). Reading c as the bottleneck width (unit channels 4c) would make the GPU c=128 row "
            "need ~25 TFLOP/s at 56×56 batch 1, beyond a 1080Ti.",
    "g3_parallel": "Appendix Fig. 1 is a drawing; its caption only names the structures. Our reading: "
                   "k-fragment-series = k 1×1 convs in a chain at width c/√k (rounded to the nearest integer "
                   "with the closest FLOPs); k-fragment-parallel = k 1×1 convs that all read the block input "
                   "(c channels) and write c/k channels each, concatenated Inception-style, so FLOPs equal "
                   "the 1-fragment block exactly.",
    "plain_convs": "The networks are plain convolutions: no BatchNorm and no bias (the paper counts FLOPs as "
                   "multiply-adds and G4 removes only ReLU and the shortcut), so element-wise work is only "
                   "G4's ReLU and add.",
    "g2_unbuildable": "Table 2's CPU g=8 row prints c=180, which 8 groups cannot split (180/8 = 22.5). latlab "
                      "builds c=184 (nearest multiple of 8 to the FLOPs of the g=1 row: +3.3 % FLOPs vs "
                      "g=1; c=176 would be -5.5 %).",
}


@dataclass(frozen=True)
class PaperRow:
    """One published row: its label, trend key, ×1 channel spec per platform and throughput per width."""

    label: str
    key: float
    channels: dict[str, dict[str, int | bool]]
    values: dict[str, dict[int, float]]

    def value(self, platform: str, width: int) -> float:
        return self.values[platform][width]


@dataclass(frozen=True)
class PaperTable:
    """One of the paper's guideline tables."""

    guideline: str
    table: int
    title: str
    caption: str
    rows: tuple[PaperRow, ...]
    quotes: tuple[str, ...] = field(default_factory=tuple)
    input_size: int | None = 56

    @property
    def baseline(self) -> PaperRow:
        return self.rows[0]

    def row(self, label: str) -> PaperRow:
        for r in self.rows:
            if r.label == label:
                return r
        raise KeyError(f"{self.guideline} has no row '{label}'")


def _vals(gpu: tuple[float, float, float], arm: tuple[float, float, float]) -> dict[str, dict[int, float]]:
    return {"gpu": dict(zip(WIDTHS, gpu, strict=True)), "arm": dict(zip(WIDTHS, arm, strict=True))}


TABLE1 = PaperTable(
    "G1", 1, "Equal channel width minimizes memory access cost (MAC)",
    "Validation experiment for Guideline 1. Four different ratios of number of input/output channels (c1 and "
    "c2) are tested, while the total FLOPs under the four ratios is fixed by varying the number of channels. "
    "Input image size is 56 × 56.",
    (
        PaperRow("1:1", 1, {"gpu": {"c1": 128, "c2": 128}, "arm": {"c1": 32, "c2": 32}},
                 _vals((1480, 723, 232), (76.2, 21.7, 5.3))),
        PaperRow("1:2", 2, {"gpu": {"c1": 90, "c2": 180}, "arm": {"c1": 22, "c2": 44}},
                 _vals((1296, 586, 206), (72.9, 20.5, 5.1))),
        PaperRow("1:6", 6, {"gpu": {"c1": 52, "c2": 312}, "arm": {"c1": 13, "c2": 78}},
                 _vals((876, 489, 189), (69.1, 17.9, 4.6))),
        PaperRow("1:12", 12, {"gpu": {"c1": 36, "c2": 432}, "arm": {"c1": 9, "c2": 108}},
                 _vals((748, 392, 163), (57.6, 15.1, 4.4))),
    ),
)

TABLE2 = PaperTable(
    "G2", 2, "Excessive group convolution increases MAC",
    "Validation experiment for Guideline 2. Four values of group number g are tested, while the total FLOPs "
    "under the four values is fixed by varying the total channel number c. Input image size is 56 × 56.",
    (
        PaperRow("g=1", 1, {"gpu": {"c": 128, "g": 1}, "arm": {"c": 64, "g": 1}},
                 _vals((2451, 1289, 437), (40.0, 10.2, 2.3))),
        PaperRow("g=2", 2, {"gpu": {"c": 180, "g": 2}, "arm": {"c": 90, "g": 2}},
                 _vals((1725, 873, 341), (35.0, 9.5, 2.2))),
        PaperRow("g=4", 4, {"gpu": {"c": 256, "g": 4}, "arm": {"c": 128, "g": 4}},
                 _vals((1026, 644, 338), (32.9, 8.7, 2.1))),
        PaperRow("g=8", 8, {"gpu": {"c": 360, "g": 8}, "arm": {"c": 180, "g": 8}},
                 _vals((634, 445, 230), (27.8, 7.5, 1.8))),
    ),
    quotes=("using 8 groups is more than two times slower than using 1 group (standard dense convolution) on "
            "GPU and up to 30% slower on ARM",),
)

TABLE3 = PaperTable(
    "G3", 3, "Network fragmentation reduces degree of parallelism",
    "Validation experiment for Guideline 3. c denotes the number of channels for 1-fragment. The channel "
    "number in other fragmented structures is adjusted so that the FLOPs is the same as 1-fragment. Input "
    "image size is 56 × 56.",
    (
        PaperRow("1-fragment", 1, {"gpu": {"c": 128, "fragments": 1, "parallel": False},
                                   "arm": {"c": 64, "fragments": 1, "parallel": False}},
                 _vals((2446, 1274, 434), (40.2, 10.1, 2.3))),
        PaperRow("2-fragment-series", 2, {"gpu": {"c": 128, "fragments": 2, "parallel": False},
                                          "arm": {"c": 64, "fragments": 2, "parallel": False}},
                 _vals((1790, 909, 336), (38.6, 10.1, 2.2))),
        PaperRow("4-fragment-series", 4, {"gpu": {"c": 128, "fragments": 4, "parallel": False},
                                          "arm": {"c": 64, "fragments": 4, "parallel": False}},
                 _vals((752, 745, 349), (38.4, 10.1, 2.3))),
        PaperRow("2-fragment-parallel", 2, {"gpu": {"c": 128, "fragments": 2, "parallel": True},
                                            "arm": {"c": 64, "fragments": 2, "parallel": True}},
                 _vals((1537, 803, 320), (33.4, 9.1, 2.2))),
        PaperRow("4-fragment-parallel", 4, {"gpu": {"c": 128, "fragments": 4, "parallel": True},
                                            "arm": {"c": 64, "fragments": 4, "parallel": True}},
                 _vals((691, 572, 292), (35.0, 8.4, 2.1))),
    ),
    quotes=("4-fragment structure is 3× slower than 1-fragment (GPU)",
            "On ARM, the speed reduction is relatively small."),
)

TABLE4 = PaperTable(
    "G4", 4, "Element-wise operations are non-negligible",
    "Validation experiment for Guideline 4. The ReLU and shortcut operations are removed from the "
    "\"bottleneck\" unit, separately. c is the number of channels in unit. The unit is stacked repeatedly "
    "for 10 times to benchmark the speed.",
    (
        PaperRow("ReLU+shortcut", 0, {"gpu": {"c": 32, "relu": True, "shortcut": True},
                                      "arm": {"c": 32, "relu": True, "shortcut": True}},
                 _vals((2427, 2066, 1436), (56.7, 16.9, 5.0))),
        PaperRow("ReLU only", 1, {"gpu": {"c": 32, "relu": True, "shortcut": False},
                                  "arm": {"c": 32, "relu": True, "shortcut": False}},
                 _vals((2647, 2256, 1735), (61.9, 18.8, 5.2))),
        PaperRow("shortcut only", 1, {"gpu": {"c": 32, "relu": False, "shortcut": True},
                                      "arm": {"c": 32, "relu": False, "shortcut": True}},
                 _vals((2672, 2121, 1458), (57.3, 18.2, 5.1))),
        PaperRow("neither", 2, {"gpu": {"c": 32, "relu": False, "shortcut": False},
                                "arm": {"c": 32, "relu": False, "shortcut": False}},
                 _vals((2842, 2376, 1782), (66.3, 20.2, 5.4))),
    ),
    quotes=("around 20% speedup is obtained on both GPU and ARM, after ReLU and shortcut are removed",),
    input_size=None,
)

TABLES: dict[str, PaperTable] = {t.guideline: t for t in (TABLE1, TABLE2, TABLE3, TABLE4)}
GUIDELINES = tuple(TABLES)

# Table 5: ShuffleNet v2 overall architecture, whole-network totals at 224×224 (FLOPs = multiply-adds).
TABLE5: dict[str, dict[str, object]] = {
    "0.5x": {"stage_channels": (48, 96, 192), "conv5": 1024, "madds": 41e6, "params": 1.4e6},
    "1x": {"stage_channels": (116, 232, 464), "conv5": 1024, "madds": 146e6, "params": 2.3e6},
    "1.5x": {"stage_channels": (176, 352, 704), "conv5": 1024, "madds": 299e6, "params": 3.5e6},
    "2x": {"stage_channels": (244, 488, 976), "conv5": 2048, "madds": 591e6, "params": 7.4e6},
}
TABLE5_COMMON = ("Conv1 3×3 stride 2, 24 channels; MaxPool 3×3 stride 2; stage repeats 1+3, 1+7, 1+3 (first "
                 "unit of each stage stride 2); GlobalPool 7×7; FC 1000; input 224×224")


def paper_tolerance(guideline: str, platform: str) -> float:
    """Largest relative FLOPs difference from the baseline row among the paper's own ×1 configurations.

    G1: the channel pairs' products c1·c2 (e.g. 22·44 = 968 vs 32·32 = 1024 → 5.5 % on ARM); G2: c²/g
    (180²/2 = 16200 vs 128² → 1.1 %); G3 and G4 are equal by construction in the paper (0).
    """
    table = TABLES[guideline]
    if guideline == "G1":
        work = [r.channels[platform]["c1"] * r.channels[platform]["c2"] for r in table.rows]
    elif guideline == "G2":
        work = [r.channels[platform]["c"] ** 2 / r.channels[platform]["g"] for r in table.rows]
    else:
        return 0.0
    base = work[0]
    return max(abs(w / base - 1.0) for w in work)
