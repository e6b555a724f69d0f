"""Bad model YAMLs give one clear error naming the layer, the field and the expectation."""

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from latlab.errors import ConfigError, ModelBuildError, UnknownModelError
from latlab.ops.builder import build_model
from latlab.ops.registry import get_block, register_block


def write(tmp_path: Path, body: str, name: str = "m.yaml") -> Path:
    p = tmp_path / name
    p.write_text(textwrap.dedent(body))
    return p


def cfg(*rows: str, head: str = "[]") -> str:
    return "nc: 4\nbackbone:\n  [" + ",\n   ".join(rows) + "]\nhead: " + head + "\n"


def test_unknown_module_names_layer_and_field(tmp_path):
    p = write(tmp_path, cfg("[-1, 1, Conv, [16, 3, 2]]", "[-1, 1, ShuffleBlock, [32, 2]]"))
    with pytest.raises(ModelBuildError) as e:
        build_model(p)
    msg = str(e.value)
    assert "layer 1" in msg and "'module'" in msg and "ShuffleBlock" in msg and "Shuffle_Block" in msg


def test_wrong_arg_count(tmp_path):
    p = write(tmp_path, cfg("[-1, 1, Conv, [16, 3, 2, 1, 1, 1, True, 9, 9]]"))
    with pytest.raises(ModelBuildError) as e:
        build_model(p)
    msg = str(e.value)
    assert "layer 0" in msg and "'args'" in msg and "[c2, k=1, s=1" in msg


def test_from_index_out_of_range(tmp_path):
    p = write(tmp_path, cfg("[-1, 1, Conv, [16, 3, 2]]", "[[-1, 7], 1, Concat, [1]]"))
    with pytest.raises(ModelBuildError) as e:
        build_model(p)
    assert "layer 1" in str(e.value) and "'from'" in str(e.value) and "7" in str(e.value)


def test_channel_mismatch_in_stride1_shufflenet_unit(tmp_path):
    p = write(tmp_path, cfg("[-1, 1, Conv, [16, 3, 2]]", "[-1, 1, Shuffle_Block, [32, 1]]"))
    with pytest.raises(ModelBuildError) as e:
        build_model(p)
    msg = str(e.value)
    assert "layer 1" in msg and "16 != output 32" in msg


def test_shape_error_found_by_dry_run_names_layer(tmp_path):
    # concat of a stride-2 and a stride-4 map: spatial sizes differ
    p = write(tmp_path, cfg("[-1, 1, Conv, [16, 3, 2]]", "[-1, 1, Conv, [16, 3, 2]]", "[[-1, 0], 1, Concat, [1]]"))
    with pytest.raises(ModelBuildError) as e:
        build_model(p)
    assert "layer 2" in str(e.value) and "Concat" in str(e.value)


def test_malformed_yaml(tmp_path):
    p = write(tmp_path, "nc: 4\nbackbone: [[-1, 1, Conv, [16, 3, 2]]\nhead: [\n")
    with pytest.raises(ConfigError) as e:
        build_model(p)
    assert "malformed YAML" in str(e.value) and "line" in str(e.value)


def test_missing_head_key(tmp_path):
    p = write(tmp_path, "nc: 4\nbackbone: [[-1, 1, Conv, [16, 3, 2]]]\n")
    with pytest.raises(ConfigError, match="missing top-level key 'head'"):
        build_model(p)


@pytest.mark.parametrize("field", ["args", "module", "from", "number"])
def test_code_in_any_field_is_rejected_never_executed(tmp_path, field):
    marker = tmp_path / "pwned"
    payload = f"__import__('pathlib').Path('{marker}').touch()"
    row = {"args": f'[-1, 1, Conv, ["{payload}", 3, 2]]', "module": f'[-1, 1, "{payload}", [16, 3, 2]]',
           "from": f'["{payload}", 1, Conv, [16, 3, 2]]', "number": f'[-1, "{payload}", Conv, [16, 3, 2]]'}[field]
    p = write(tmp_path, cfg(row))
    with pytest.raises(ModelBuildError) as e:
        build_model(p)
    assert "layer 0" in str(e.value)
    assert not marker.exists()


def test_yaml_python_tags_are_not_constructed(tmp_path):
    p = write(tmp_path, "nc: !!python/object/apply:os.system ['id']\nbackbone: []\nhead: []\n")
    with pytest.raises(ConfigError):
        build_model(p)


def test_unknown_zoo_name_suggests_close_matches():
    with pytest.raises(UnknownModelError, match="did you mean"):
        build_model("yolov5ss")


def test_repeat_with_channel_change_is_rejected(tmp_path):
    p = write(tmp_path, cfg("[-1, 1, Conv, [16, 3, 2]]", "[-1, 3, MV2Block, [32, 1]]"))
    with pytest.raises(ModelBuildError, match="number=3"):
        build_model(p)


def test_registry_aliases_and_duplicates():
    assert get_block("InvertedResidual").name == "Shuffle_Block"
    assert get_block("nn.Upsample").name == "nn.Upsample"
    with pytest.raises(ValueError, match="already registered"):
        register_block("Conv")(type("Dup", (), {}))


def test_seed_yaml_spelling_builds_from_dict():
    d = {"nc": 3, "anchors": [[10, 13, 16, 30, 33, 23]] * 3, "backbone": [[-1, 1, "Conv", [16, 3, 2]]], "head": [
        [-1, 1, "nn.Upsample", ["None", 2, "nearest"]], [-1, 1, "Conv", [8, 1, 1]]]}
    m = build_model(d)
    assert [li.module for li in m.layer_info] == ["Conv", "nn.Upsample", "Conv"]


def test_cli_prints_one_line_and_exits_nonzero(tmp_path):
    p = write(tmp_path, cfg("[-1, 1, Conv, [16, 3, 2]]", "[-1, 1, Nope, [32, 2]]"))
    r = subprocess.run([sys.executable, "-m", "latlab.cli", "build", str(p)], capture_output=True, text=True)
    assert r.returncode == 2
    err = [line for line in r.stderr.strip().splitlines() if line]
    assert len(err) == 1 and "layer 1" in err[0] and "Traceback" not in r.stderr
