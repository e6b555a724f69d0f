"""Hostile inputs, issue 18 findings 4, 6 and 8: counts, sizes and numbers are bounded before anything is
expanded, allocated or timed, and every refusal is one line naming the value and (for a limit) how to raise it."""

import math
import textwrap
from pathlib import Path

import pytest

from latlab.cli import main
from latlab.errors import ConfigError, LatlabError, SearchError, TableError
from latlab.lut import kit_runner
from latlab.lut.kit import check_model_time
from latlab.lut.table import Calibration, Entry, LatencyTable
from latlab.ops.builder import build_model
from latlab.search.settings import SearchSettings
from latlab.search.space import DEFAULT_SPACE, load_space
from latlab.validate import image_size, multiple, positive_float, positive_int
from latlab.yamlio import read_yaml, safe_load_text


def cli(capsys, *args: str) -> tuple[int, str]:
    """Run the CLI in-process; return its exit code and its stderr (which must be one line on error)."""
    rc = main(list(args))
    err = capsys.readouterr().err.strip()
    return rc, err


def one_line(capsys, *args: str) -> str:
    rc, err = cli(capsys, *args)
    assert rc != 0
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, err[:2000]
    assert "Traceback" not in err
    return lines[0]


def model_yaml(tmp_path: Path, body: str, name: str = "m.yaml") -> Path:
    p = tmp_path / name
    p.write_text(textwrap.dedent(body))
    return p


TINY = """\
nc: 2
anchors: [[10, 13, 16, 30], [30, 61, 62, 45], [116, 90, 156, 198]]
backbone:
  [[-1, 1, Conv, [16, 3, 2]],
   [-1, 1, Conv, [16, 3, 2]],
   [-1, 1, Conv, [16, 3, 2]],
   [-1, 1, Conv, [16, 3, 2]],
   [-1, 1, Conv, [16, 3, 2]]]
head:
  [[[2, 3, 4], 1, Detect, [nc, anchors]]]
"""


# ---------------------------------------------------------------------------------------------- finding 4
def _alias_bomb(levels: int) -> str:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    for i in range(1, levels):
        refs = ", ".join([f"*a{i - 1}"] * 10)
        lines.append(f"a{i}: &a{i} [{refs}]")
    return "\n".join(lines) + f"\nbackbone: [[-1, 1, Conv, *a{levels - 1}]]\nhead: []\n"


def test_alias_bomb_is_refused_while_loading(tmp_path):
    p = tmp_path / "bomb.yaml"
    p.write_text(_alias_bomb(10))  # 10^10 items once expanded
    with pytest.raises(ConfigError, match=r"LATLAB_MAX_YAML_NODES") as exc:
        read_yaml(p)
    assert len(str(exc.value)) < 400


def test_alias_bomb_cli_prints_a_short_line(tmp_path, capsys):
    p = tmp_path / "bomb.yaml"
    p.write_text(_alias_bomb(7))  # 10^7 items: used to print a 33 MB error
    line = one_line(capsys, "build", str(p))
    assert "LATLAB_MAX_YAML_NODES" in line and len(line) < 600


def test_cli_caps_any_long_message(tmp_path, capsys):
    p = model_yaml(tmp_path, "nc: 2\nbackbone: [[-1, 1, " + "X" * 200_000 + ", [8]]]\nhead: []\n")
    line = one_line(capsys, "build", str(p))
    assert len(line) <= 1100 and "characters" in line


def test_huge_repeat_count_is_refused_before_building(tmp_path):
    p = model_yaml(tmp_path, "nc: 2\nbackbone: [[-1, 1, Conv, [64, 3, 2]], [-1, 100000000, C3, [64]]]\nhead: []\n")
    with pytest.raises(ConfigError, match=r"layer 1.*100000000.*LATLAB_MAX_REPEAT"):
        build_model(p)


def test_wide_model_memory_estimate_is_refused(tmp_path):
    p = model_yaml(tmp_path, "nc: 2\nbackbone: [[-1, 1, Conv, [16384, 3, 2]], [-1, 900, C3, [16384]]]\nhead: []\n")
    with pytest.raises(ConfigError, match=r"GB \(estimate\).*LATLAB_MAX_MODEL_GB"):
        build_model(p)


def test_anchor_list_of_100000_entries_is_refused(tmp_path):
    body = TINY.replace("[10, 13, 16, 30]", "[" + ", ".join(["10"] * 100_000) + "]")
    with pytest.raises(ConfigError, match=r"anchors.*LATLAB_MAX_ANCHORS"):
        build_model(model_yaml(tmp_path, body))


def test_space_with_huge_depth_is_refused(tmp_path):
    text = DEFAULT_SPACE.read_text()
    raw = read_yaml(DEFAULT_SPACE)
    raw["stages"][0]["depth"] = [100000000]
    with pytest.raises(ConfigError, match=r"P3\.depth.*100000000.*LATLAB_MAX_REPEAT"):
        load_space(raw)
    assert text  # the shipped space itself still loads
    load_space(DEFAULT_SPACE)


def test_data_make_huge_n_train_is_refused_before_writing(tmp_path, capsys):
    line = one_line(capsys, "data", "make", "--n-train", "1000000000", "--root", str(tmp_path))
    assert "GB (estimate)" in line and "LATLAB_MAX_DATA_GB" in line
    assert not any(tmp_path.iterdir())


def test_huge_imgsz_is_refused(capsys, tmp_path):
    line = one_line(capsys, "profile", "yolov5n", "--imgsz", "1000000", "--budget", "0.1",
                    "--out", str(tmp_path / "p"))
    assert "1000000" in line and "LATLAB_MAX_IMGSZ" in line


def test_limits_are_raised_by_their_environment_variable(monkeypatch):
    with pytest.raises(ConfigError, match="LATLAB_MAX_IMGSZ"):
        image_size(8192, "--imgsz")
    monkeypatch.setenv("LATLAB_MAX_IMGSZ", "10000")
    assert image_size(8192, "--imgsz") == 8192


# ---------------------------------------------------------------------------------------------- finding 6
@pytest.mark.parametrize("budget", ["-1", "nan", "0", "inf"])
def test_profile_budget_must_be_positive_and_finite(capsys, tmp_path, budget):
    line = one_line(capsys, "profile", "yolov5n", "--budget", budget, "--out", str(tmp_path / "p"))
    assert "--budget" in line
    assert not (tmp_path / "p").exists()


def test_profile_imgsz_zero_is_refused(capsys, tmp_path):
    line = one_line(capsys, "profile", "yolov5n", "--imgsz", "0", "--budget", "0.1", "--out", str(tmp_path / "p"))
    assert "imgsz" in line


@pytest.mark.parametrize("batch", ["-4", "0"])
def test_train_batch_must_be_positive(capsys, batch):
    line = one_line(capsys, "train", "yolov5n", "--batch", batch, "--epochs", "1")
    assert "--batch" in line


def test_train_imgsz_zero_is_refused(capsys):
    line = one_line(capsys, "train", "yolov5n", "--imgsz", "0", "--epochs", "1")
    assert "--imgsz" in line


def test_lut_build_rounds_zero_is_refused(capsys, tmp_path):
    line = one_line(capsys, "lut", "build", "--out", str(tmp_path / "t.lut.json"), "--rounds", "0")
    assert "--rounds" in line
    assert not any(tmp_path.iterdir())


def test_kit_runner_threads_zero_is_refused(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        kit_runner.main(["--kit", str(tmp_path), "--threads", "0"])
    assert exc.value.code == 2
    assert "--threads" in capsys.readouterr().err


def test_zero_ms_entry_is_refused():
    d = Entry("Conv", 0.0, 0.0, 0.0, 0.0, 0.0, 40).to_dict()
    with pytest.raises(TableError, match=r"estimate_ms.*> 0"):
        Entry.from_dict(d, "results.jsonl: entry 'k'")


def test_negative_calibration_in_a_checksummed_table_is_refused(tmp_path):
    t = LatencyTable(backend="torch", threads=1, imgsz=32, estimator="p10", fingerprint={}, versions={},
                     protocol={}, entries={"k": Entry("Conv", 0.1, 0.1, 0.0, 0.1, 0.1, 40)},
                     calibration=Calibration("scale", {"sum_ms": -266.0}))
    path = t.save(tmp_path / "neg.lut.json")  # a valid checksum over a negative scale
    with pytest.raises(TableError, match=r"sum_ms.*-266"):
        LatencyTable.load(path)


def test_negative_anchors_are_refused(tmp_path):
    body = TINY.replace("[10, 13, 16, 30]", "[-10, 13, 16, 30]")
    with pytest.raises(ConfigError, match=r"anchors.*-10"):
        build_model(model_yaml(tmp_path, body))


def test_validators_by_hand():
    assert positive_int(3, "n") == 3
    assert positive_float(2.5, "budget") == 2.5
    assert multiple("0.25", "width_multiple") == 0.25  # YAML 1.1 spelling as text
    for bad in (0, -1, math.nan, math.inf, "abc", True):
        with pytest.raises(LatlabError):
            positive_float(bad, "--budget")
    with pytest.raises(LatlabError, match="multiple of the model's max stride 32; try 640"):
        image_size(650, "--imgsz", stride=32)


# ---------------------------------------------------------------------------------------------- finding 8
def test_bad_baseline_name_is_refused_before_the_study(tmp_path):
    s = SearchSettings(mode="pareto", baselines=("yolov5n", "nope-model"), results_root=tmp_path)
    with pytest.raises(SearchError, match=r"--baselines 'nope-model'"):
        s.check()


@pytest.mark.parametrize("field,value", [("expansion", math.nan), ("expansion", math.inf),
                                         ("expansion", 1e12), ("width", 10 ** 9), ("kernel", 10 ** 6)])
def test_space_rejects_nan_inf_and_huge_values(field, value):
    raw = read_yaml(DEFAULT_SPACE)
    raw["stages"][1][field] = [value]
    with pytest.raises(ConfigError, match=rf"P4\.{field}"):
        load_space(raw)


def test_width_multiple_text_1e9_error_shows_the_number(tmp_path):
    p = model_yaml(tmp_path, TINY.replace("nc: 2", "nc: 2\nwidth_multiple: 1e9"))
    assert safe_load_text(p.read_text())["width_multiple"] == "1e9"  # YAML 1.1 reads it as text
    with pytest.raises(ConfigError, match=r"width_multiple = 1e\+09 is too large.*LATLAB_MAX_MULTIPLE"):
        build_model(p)


def test_width_multiple_as_text_number_is_used(tmp_path):
    p = model_yaml(tmp_path, TINY.replace("nc: 2", "nc: 2\nwidth_multiple: 5e-1"))
    m = build_model(p)
    assert m.layer_info[0].out_channels == 8  # 16 × 0.5


def test_negative_model_time_in_kit_results_names_the_model(tmp_path):
    with pytest.raises(TableError, match=r"results\.jsonl: model 'arch-1'.*-3"):
        check_model_time({"name": "arch-1", "estimate_ms": -3.0, "median_ms": 1.0}, tmp_path / "results.jsonl")
