"""Deployment targets: the sourced table, the DPU slope preset and `inspect target=` (issue 11, part 3)."""

import json
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from torch import nn
from ultralytics import YOLO

from yolo_leaky import UserError, load, parse_act, swap_activations, take_census, write_act_yaml
from yolo_leaky.core.census import Census
from yolo_leaky.core.spec import LEAKY_PRESETS
from yolo_leaky.core.swap import spec_from_yaml
from yolo_leaky.targets.table import (
    STATUSES,
    TABLE_ACTS,
    TARGETS,
    check_target,
    leaky_slopes,
)

REPO = Path(__file__).resolve().parents[1]
SLOPE_WARNING = "LeakyReLU slope 0.1 is not supported on dpu (needs 0.1015625); use act=leaky_relu:dpu"


@pytest.fixture(scope="module")
def yolo():
    """One yolo11n; each test swaps it to the activation it needs first."""
    return load("yolo11n.yaml")


def run_cli(args, cwd):
    return subprocess.run(
        [sys.executable, "-m", "yolo_leaky.cli", *args], cwd=cwd, capture_output=True, text=True, timeout=600
    )


def test_dpu_preset_is_26_over_256_and_round_trips():
    spec = parse_act("leaky_relu:dpu")
    assert spec.slope == 0.1015625 == 26 / 256
    assert spec.build().negative_slope == 0.1015625
    assert str(spec) == "leaky_relu:dpu" and spec.label == "leaky_relu_dpu"
    assert parse_act(str(spec)) == spec
    assert parse_act(spec.torch_spelling) == spec
    assert parse_act("leaky_relu:0.1015625") == spec  # the same slope written out is the same spec
    assert str(parse_act("leaky_relu:0.1")) == "leaky_relu:0.1"  # other slopes keep their numeric spelling


def test_slopes_that_g_format_would_round_now_round_trip():
    for text in ["leaky_relu:0.123456789", "prelu:layer:0.123456789"]:
        spec = parse_act(text)
        assert parse_act(str(spec)) == spec, str(spec)


def test_dpu_preset_round_trips_through_model_yaml(yolo, tmp_path):
    spec = parse_act("leaky_relu:dpu")
    swap_activations(yolo, "leaky_relu:dpu")
    assert yolo.model.yaml["yolo_leaky"]["act"] == "leaky_relu:dpu"
    assert spec_from_yaml(yolo.model.yaml) == spec
    assert set(leaky_slopes(yolo)) == {0.1015625}

    path = write_act_yaml("yolo11n", "leaky_relu:dpu", tmp_path)
    assert path.name == "yolo11n-leaky_relu_dpu.yaml"
    rebuilt = load(str(path))
    assert spec_from_yaml(rebuilt.model.yaml) == spec
    assert set(leaky_slopes(rebuilt)) == {0.1015625}
    stock = YOLO(str(path)).model  # the stock route builds from the file's `activation:` key alone
    assert {round(s, 9) for s in leaky_slopes(stock)} == {0.1015625}


def test_leaky_slope_0_1_warns_on_dpu_and_the_preset_does_not(yolo):
    swap_activations(yolo, "leaky_relu:0.1")
    assert check_target(yolo, "dpu") == [SLOPE_WARNING]
    census = take_census(yolo)
    assert check_target(census, "dpu", slopes=leaky_slopes(yolo)) == [SLOPE_WARNING]
    (unchecked,) = check_target(census, "dpu")  # a census records no slopes: say so rather than pass
    assert "slopes not checked" in unchecked and "act=leaky_relu:dpu" in unchecked

    swap_activations(yolo, "leaky_relu:dpu")
    assert check_target(yolo, "dpu") == []
    assert check_target(take_census(yolo), "dpu", slopes=leaky_slopes(yolo)) == []


def test_cpu_fallbacks_are_reported(yolo):
    swap_activations(yolo, "silu")
    sites = len(take_census(yolo).silu_sites)
    (dpu,) = check_target(yolo, "dpu")
    assert dpu.startswith(f"SiLU ({sites} sites) falls back to the host CPU on dpu")
    assert "use act=relu" in dpu
    # The Edge TPU maps LOGISTIC and MUL (Coral's op list), so SiLU stays on it; LeakyReLU and HardSwish do not.
    assert check_target(yolo, "edgetpu") == []
    for act, cls in [("hardswish", "Hardswish"), ("leaky_relu:0.1", "LeakyReLU")]:
        swap_activations(yolo, act)
        (edgetpu,) = check_target(yolo, "edgetpu")
        assert edgetpu.startswith(f"{cls} ({sites} sites) falls back to the host CPU on edgetpu"), edgetpu


def test_relu_gives_no_warning_on_any_target(yolo):
    swap_activations(yolo, "relu")
    assert check_target(yolo, "tensorrt") == []
    assert {key: check_target(yolo, key) for key in TARGETS} == {key: [] for key in TARGETS}


def test_functional_silu_calls_count_as_silu():
    census = Census(sites=Counter(), functional_silu_calls=3)
    (line,) = check_target(census, "dpu")
    assert line.startswith("F.silu (3 calls per forward) falls back to the host CPU on dpu")
    assert check_target(Census(sites=Counter({"Identity": 5})), "dpu") == []  # nothing runs at an Identity site


def test_every_cell_has_a_status_from_the_vocabulary_and_a_source():
    issue_ref = re.compile(r"[\w.-]+/[\w.-]+#\d+( \(.+\))?")
    for key, target in TARGETS.items():
        assert tuple(target.cells) == TABLE_ACTS, key
        for act, cell in target.cells.items():
            where = f"{key}/{act}"
            assert cell.status in STATUSES, where
            assert cell.note.strip(), where
            assert cell.source.strip(), where
            for src in cell.source.split("; "):
                assert src.startswith(("https://", "measured here: ")) or issue_ref.fullmatch(src), (where, src)
            assert (cell.slope is not None) == (cell.status == "constrained" and act == "leaky_relu"), where
    assert TARGETS["dpu"].cells["leaky_relu"].slope == LEAKY_PRESETS["dpu"] == parse_act("leaky_relu:dpu").slope


# The copy of this table in docs/targets.md, and its advice on which activations run everywhere, are checked in
# tests/test_docs.py with the docs' other tables.


def test_unknown_target_is_one_line_naming_the_valid_ones():
    with pytest.raises(UserError) as err:
        check_target(nn.ReLU(), "dpuu")
    message = str(err.value)
    assert "\n" not in message and "did you mean 'dpu'" in message
    assert all(key in message for key in TARGETS)


@pytest.mark.slow
def test_cli_inspect_target_dpu(tmp_path):
    bad = run_cli(["inspect", "model=yolo11n.yaml", "act=leaky_relu:0.1", "target=dpu"], tmp_path)
    assert bad.returncode == 0, bad.stderr[-2000:]
    assert SLOPE_WARNING in bad.stdout

    good = run_cli(["inspect", "model=yolo11n.yaml", "act=leaky_relu:dpu", "target=dpu", "--json"], tmp_path)
    assert good.returncode == 0, good.stderr[-2000:]
    result = json.loads(good.stdout)
    assert result["target"] == "dpu" and result["target_warnings"] == []
    assert result["sites"] == {"LeakyReLU": sum(result["sites"].values())}


@pytest.mark.slow
def test_cli_unknown_target_exits_2_with_one_line(tmp_path):
    result = run_cli(["inspect", "model=yolo11n.yaml", "target=coral"], tmp_path)
    assert result.returncode == 2
    assert "Traceback" not in result.stdout + result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("yolo-leaky: error: unknown target 'coral'") and "edgetpu" in line
