"""Mixed variants of ``compare`` (``relu@keep1``): the spelling is parsed without evaluation, the kept layers are
the top of a ranking measured on the training side (cached by contents), and the variant runs end to end with the
same stages as every variant: its cells rebuild the mix from the model YAML's key, and the report and results.json
say which layers kept SiLU, why, and where its repaired mAP lies."""

import json

import pytest
import yaml

from yolo_leaky import cli
from yolo_leaky.core.census import take_census
from yolo_leaky.core.loading import load
from yolo_leaky.core.partial import compact
from yolo_leaky.harness import mixed
from yolo_leaky.harness.config import CompareConfig, MixedSpec, parse_variant
from yolo_leaky.utils.errors import UserError


def test_spelling_parses_and_refuses_without_eval():
    spec = parse_variant("leaky_relu:0.1@keep3")
    assert isinstance(spec, MixedSpec) and spec.keep == 3 and str(spec.base) == "leaky_relu:0.1"
    assert str(spec) == "leaky_relu:0.1@keep3" and spec.label == "leaky_relu0.1@keep3"
    assert not isinstance(parse_variant("relu"), MixedSpec)
    for bad, fragment in [
        ("relu@keep0", ">= 1"),
        ("relu@keepx", "whole number"),
        ("relu@keep-1", "whole number"),
        ("relu@3", "<act>@keep<k>"),
        ("silu@keep1", "nothing to mix"),
        ("__import__('os')@keep1", "refused activation"),
    ]:
        with pytest.raises(UserError) as e:
            parse_variant(bad)
        assert fragment in str(e.value) and "\n" not in str(e.value), (bad, e.value)


def test_choice_takes_the_top_of_the_ranking_and_says_whether_it_is_separable():
    def row(rank, layer, cost, separable_from=()):
        return {"rank": rank, "layer": layer, "type": "C3k2", "sites": 4, "cost": cost, "noise": 0.005,
                "separable_from": list(separable_from)}  # fmt: skip

    ranking = {"units": [row(2, 4, 0.01, [1]), row(1, 16, 0.03, [2, 3]), row(3, 0, 0.0, [1])]}
    one, two = mixed.choose(ranking, 1), mixed.choose(ranking, 2)
    assert one["keep"] == [16] and one["next"]["layer"] == 4 and one["separable_from_next"] is True
    assert two["keep"] == [4, 16] and two["next"]["layer"] == 0 and two["separable_from_next"] is False
    assert two["kept_sites"] == 8


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory, standin):
    """``compare --quick variants=[silu,relu,relu@keep1]`` on the stand-in (finetune only, to keep it small; both
    runtimes timed, each for 2 blocks of 1 s: the timings only need to exist for every variant, and --quick's 4 blocks
    of 3 s made the speed stage two thirds of the run)."""
    root = tmp_path_factory.mktemp("mixed")
    import os

    here = os.getcwd()
    os.chdir(root)
    try:
        code = cli.main(
            ["compare", "--quick", "variants=[silu,relu,relu@keep1]", "recovery=[finetune]", "name=m"]
            + ["bench_seconds=1", "bench_blocks=2"]
        )
    finally:
        os.chdir(here)
    assert code == 0
    run = root / "runs/compare/m"
    return run, json.loads((run / "results.json").read_text())


@pytest.mark.slow
def test_quick_compare_writes_the_mixed_row_and_its_kept_layers(quick_run):
    run, results = quick_run
    row = results["mixed"]["relu@keep1"]
    ranking = row["ranking"]
    top = min(ranking["units"], key=lambda r: r["rank"])
    assert row["keep"] == [top["layer"]] and top["cost"] == max(r["cost"] for r in ranking["units"])
    # ranked on the training side: the stand-in data's tune split, never the validation images
    assert ranking["scored_on"]["what"] == "tune split"
    scored = yaml.safe_load(open(ranking["scored_on"]["yaml"]))
    assert scored["val"] == "images/tune" and ranking["scored_on"]["split"] == "val"
    assert "relu@keep1" in results["variants"] and results["variants"]["relu@keep1"]["map50_95_mean"] is not None
    report = (run / "report.md").read_text()
    assert "## Mixed variants" in report and f"| `relu@keep1` | {top['layer']} (" in report
    assert json.loads((run / "mixed.json").read_text())["relu@keep1"]["keep"] == row["keep"]
    # the same speed and cost columns as every variant
    assert "relu@keep1" in results["speed"]["onnx"] and "relu@keep1" in results["cost"]
    timings = results["speed"]["timings"]
    assert set(timings) == {"torch-cpu", "ort-cpu"}, set(timings)  # timed in every runtime, like every variant
    for runtime, timed in timings.items():
        assert "relu@keep1" in timed["stats"] and timed["samples_ns"]["relu@keep1"], runtime


@pytest.mark.slow
def test_the_cell_and_its_start_rebuild_the_mix(quick_run):
    """The start checkpoint records keep_silu in its YAML key; the trainer (which rebuilds from that key) trained
    SiLU in exactly the kept layers and ReLU everywhere else (census in the trainer)."""
    run, results = quick_run
    keep = results["mixed"]["relu@keep1"]["keep"]
    start = results["swap"]["variants"]["relu@keep1"]["seeds"]["0"]["start"]["path"]
    yolo = load(run.parents[2] / start)  # the run's paths are relative to the folder it ran in
    assert yolo.model.yaml["yolo_leaky"] == {"act": "relu", "keep_silu": keep}
    census = take_census(yolo)
    assert census.mix() == {"ReLU": census.mix()["ReLU"], "SiLU": compact(keep)}
    assert all(set(types) == {"SiLU"} for layer, types in census.by_layer.items() if layer in keep)
    assert all("SiLU" not in types for layer, types in census.by_layer.items() if layer not in keep)
    cell = results["cells"]["relu@keep1-finetune-s0"]
    assert cell["status"] == "ok" and cell["mix_in_trainer"]["SiLU"] == compact(keep)
    assert cell["census_in_trainer"]["ReLU"] > 0


@pytest.mark.slow
def test_mixed_repaired_map_lies_between_the_full_swap_and_silu(quick_run):
    """Measured, not assumed: with no training, after the same repair (bn for ReLU; SiLU + bn is the reference),
    keeping SiLU in the top-ranked layer scores between the full ReLU swap and SiLU on the validation images."""
    _, results = quick_run
    row = results["mixed"]["relu@keep1"]
    s = row["repaired_map50_95"]
    variants = results["swap"]["variants"]
    assert row["repair"] == "bn" and s["mixed"] == variants["relu@keep1"]["repairs"]["bn"]["metrics"]["map50_95"]
    assert s["silu"] == variants["silu"]["repairs"]["bn"]["metrics"]["map50_95"]
    assert s["full_swap"] == variants["relu"]["repairs"]["bn"]["metrics"]["map50_95"]
    assert s["full_swap"] < s["mixed"] < s["silu"], s
    assert row["between"] is True


@pytest.mark.slow
def test_ranking_is_cached_by_contents_not_by_label(quick_run, standin, monkeypatch):
    run, results = quick_run
    data = run / "shapes/shapes.yaml"
    c = CompareConfig(weights=str(standin[0]), imgsz=64, name="other", project="elsewhere")
    key, _ = mixed.ranking_key(c, parse_variant("relu@keep1"), data)
    assert key == results["mixed"]["relu@keep1"]["ranking"]["key"]  # another run name and project: the same key
    assert mixed.ranking_key(c, parse_variant("relu@keep3"), data)[0] == key  # k only picks from the ranking
    for other in (parse_variant("leaky_relu:0.1@keep1"), parse_variant("prelu@keep1")):
        assert mixed.ranking_key(c, other, data)[0] != key
    assert (
        mixed.ranking_key(CompareConfig(**{**c.__dict__, "repair": "none"}), parse_variant("relu@keep1"), data)[0]
        != key
    )
    assert mixed.ranking_key(CompareConfig(**{**c.__dict__, "imgsz": 96}), parse_variant("relu@keep1"), data)[0] != key

    def must_not_run(*args, **kwargs):
        raise AssertionError("a cached ranking was measured again")

    monkeypatch.setattr(mixed, "run_sensitivity", must_not_run)
    again = mixed.rank_layers(c, parse_variant("relu@keep2"), data)
    assert again["cached"] and again["key"] == key
