"""User errors end with exit status 2 and one line that names the file, line or field."""

from __future__ import annotations

import textwrap

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from simcluster.cli.main import main
from simcluster.config.loader import default_scenario_dict, load_scenario
from simcluster.errors import UserError


def _err(capsys, argv):
    code = main(argv)
    out = capsys.readouterr()
    return code, out.err.strip()


def _write(tmp_path, text, name="s.yaml"):
    p = tmp_path / name
    p.write_text(textwrap.dedent(text))
    return str(p)


def _with(tmp_path, **changes):
    d = default_scenario_dict()
    d.update(changes)
    return _write(tmp_path, yaml.safe_dump(d))


@pytest.mark.parametrize("argv, needle", [
    (["run", "no/such/scenario.yaml"], "no/such/scenario.yaml: scenario file not found"),
    (["run", "--trace", "no/such/trace.csv"], "no/such/trace.csv: trace file not found"),
    (["run", "--set", "serving.colour=blue"], "serving.colour: unknown key"),
    (["run", "--set", "cluster.gpu=a100"], "cluster.gpu: unknown GPU 'a100'"),
    (["run", "--set", "model.name=gpt-7"], "model.name: unknown model 'gpt-7'"),
    (["run", "--set", "model.kv_cache=fp7"], "model.kv_cache: unknown number format 'fp7'"),
    (["run", "--set", "pools.decode.instances=-1"], "pools.decode.instances"),
    (["run", "--set", "pools.decode.max_num_seqs=lots"], "pools.decode.max_num_seqs"),
    (["run", "--set", "workload.arrival.rate_per_s=-5"], "workload.arrival.rate_per_s"),
    (["run", "--set", "workload.arrival.process=weird"], "workload.arrival.process"),
    (["run", "--set", "pools.prefill.layout=tp=16"], "pools.prefill.layout"),
    (["run", "--set", "pools.prefill.layout=tp=3"], "pools.prefill.layout"),
    (["run", "--set", "pools.colocated.instances=1"], "pools.colocated"),
    (["run", "--set", "serving.mode=colocated"], "has no prefill pool"),
    (["run", "--set", "cluster.nodes=0"], "cluster.nodes"),
    (["run", "--set", "novalue"], "--set expects dotted.key=value"),
    (["run", "--seed", "-3"], "-3"),
])
def test_bad_input_exits_2_with_a_message_naming_the_field(capsys, argv, needle):
    code, err = _err(capsys, argv)
    assert code == 2
    assert needle in err
    assert "Traceback" not in err
    assert len(err.splitlines()) <= 3


def test_model_that_does_not_fit_is_rejected(tmp_path, capsys):
    code, err = _err(capsys, ["run", "--set", "model.name=llama-3.1-405b", "--set", "model.weights=bf16"])
    assert code == 2 and "does not fit" in err and "pools.prefill" in err


def test_pools_larger_than_the_cluster_are_rejected(capsys):
    code, err = _err(capsys, ["run", "--set", "pools.decode.instances=8"])
    assert code == 2 and "cluster.nodes" in err and "GPUs" in err


def test_invalid_yaml_names_the_line(tmp_path, capsys):
    p = _write(tmp_path, "name: x\nworkload: [1, 2\n")
    code, err = _err(capsys, ["run", p])
    assert code == 2 and f"{p}:" in err and "invalid YAML" in err


def test_yaml_that_is_not_a_mapping(tmp_path, capsys):
    p = _write(tmp_path, "- just\n- a list\n")
    code, err = _err(capsys, ["run", p])
    assert code == 2 and "mapping" in err


def test_yaml_is_parsed_safely(tmp_path, capsys):
    p = _write(tmp_path, "name: !!python/object/apply:os.system ['echo pwned']\n")
    code, err = _err(capsys, ["run", p])
    assert code == 2 and "invalid YAML" in err


def test_malformed_trace_row_names_file_and_line(tmp_path, capsys):
    t = tmp_path / "t.csv"
    t.write_text("TIMESTAMP,ContextTokens,GeneratedTokens\n"
                 "2023-11-16 18:15:46.6805900,374,44\n"
                 "2023-11-16 18:15:47.0000000,abc,44\n")
    code, err = _err(capsys, ["run", "--trace", str(t)])
    assert code == 2 and "t.csv" in err and ":3" in err


def test_unsorted_trace_timestamps_are_rejected(tmp_path, capsys):
    t = tmp_path / "t.csv"
    t.write_text("TIMESTAMP,ContextTokens,GeneratedTokens\n"
                 "2023-11-16 18:15:46.6805900,374,44\n"
                 "2023-11-16 18:15:40.0000000,10,44\n")
    code, err = _err(capsys, ["run", "--trace", str(t)])
    assert code == 2 and "t.csv" in err and ":3" in err


def test_output_folder_that_cannot_be_created(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    code, err = _err(capsys, ["run", "--set", "workload.num_requests=5", "-o", str(blocker / "out")])
    assert code == 2 and "out" in err


# ------------------------------------------------------------------ fuzzing the scenario loader
_scalars = st.one_of(st.none(), st.booleans(), st.integers(-5, 10**6), st.floats(allow_nan=True),
                     st.text(max_size=12))
_keys = st.sampled_from(["name", "seed", "cluster", "model", "serving", "pools", "workload", "slo",
                         "output", "run", "clients", "cost", "gpu", "nodes", "layout", "instances", "kind",
                         "prefill", "decode", "colocated", "mode", "num_requests", "arrival", "x"])
_trees = st.recursive(_scalars, lambda c: st.one_of(st.lists(c, max_size=3),
                                                    st.dictionaries(_keys, c, max_size=4)), max_leaves=12)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(tree=st.dictionaries(_keys, _trees, max_size=6))
def test_scenario_loader_never_crashes_on_arbitrary_yaml(tmp_path, tree):
    p = tmp_path / "fuzz.yaml"
    p.write_text(yaml.safe_dump(tree))
    try:
        load_scenario(p)
    except UserError as exc:
        assert str(exc)


@settings(max_examples=100, deadline=None)
@given(key=st.text(min_size=1, max_size=20), value=st.text(max_size=20))
def test_overrides_never_crash(key, value):
    try:
        load_scenario(None, [f"{key}={value}"])
    except UserError as exc:
        assert str(exc)


def test_scenario_reference_doc_is_generated_from_the_code():
    from pathlib import Path

    from simcluster.config.reference import reference

    doc = Path(__file__).resolve().parents[1] / "docs" / "scenario-reference.md"
    assert doc.read_text() == reference(), "regenerate: python -m simcluster.config.reference > docs/scenario-reference.md"


def test_every_example_scenario_validates():
    from pathlib import Path

    scen = Path(__file__).resolve().parents[1] / "scenarios"
    files = [p for p in scen.rglob("*.yaml") if "studies" not in p.parts]
    assert files
    for p in files:
        load_scenario(p)
