"""Records: one builder for every kind (ok, diverged, error, reference), reference rows keyed by
what they are, and the spec as the only thing a worker receives."""
import json
import textwrap

import torch

from bench import executors, plugins, records, store
from bench.presets import PRESETS
from bench.spec import from_dict, resolve

FINAL = {"fid": 3.0, "modes_covered": 10.0}


def test_train_set_rows_of_two_datasets_in_one_folder_are_two_records(tmp_path):
    """A study of mnist and stacked-mnist in one --out keeps both calibration rows (their ids
    used to be reference-<name> whatever the dataset)."""
    for dataset in ("mnist", "stacked-mnist"):
        spec = records.reference_spec("train set", dataset, "quick")
        record = records.reference_record(spec, FINAL, 0.1, torch.device("cpu"))
        store.write_run(store.reference_dir(tmp_path, dataset, "quick", "train set"), None, record)
    loaded = store.load_records(tmp_path)
    assert sorted(r["spec"]["dataset"] for r in loaded) == ["mnist", "stacked-mnist"]
    assert len({r["run_id"] for r in loaded}) == len({r["variant_id"] for r in loaded}) == 2


def test_a_reference_row_is_keyed_by_what_it_is_not_where_its_data_lie():
    a = records.reference_spec("train set", "mnist", "quick", {"data_dir": "/data/a"})
    b = records.reference_spec("train set", "mnist", "quick", {"data_dir": "/elsewhere"})
    c = records.reference_spec("train set", "mnist", "paper")
    assert records.reference_ids(a) == records.reference_ids(b) != records.reference_ids(c)
    assert records.reference_ids(a)[0].startswith("reference-train-set-")


def test_an_old_reference_record_gets_the_same_id_as_a_new_one(tmp_path):
    spec = records.reference_spec("uniform noise", "mnist", "quick")
    new = records.reference_record(spec, FINAL, 0.1, torch.device("cpu"))
    old = {**new, "run_id": "reference-uniform-noise", "variant_id": "reference-uniform-noise"}  # as written before
    store.write_run(store.reference_dir(tmp_path, "mnist", "quick", "uniform noise"), None, old)
    (loaded,) = store.load_records(tmp_path)
    assert (loaded["run_id"], loaded["variant_id"]) == (new["run_id"], new["variant_id"])


def test_an_error_record_has_the_shape_of_a_run_record():
    spec = resolve("gan", "ring8", 0, "pacgan-toy", steps=10)
    failed = executors.error_record(spec, "RuntimeError: boom")
    assert failed["schema"] == records.SCHEMA and failed["status"] == "error" and failed["error"].startswith("Runtime")
    assert (failed["run_id"], failed["variant_id"]) == (spec.run_id, spec.variant_id)
    assert failed["final"] == {} and failed["history"] == [] and "git_revision" in failed["environment"]
    # the preset's verdict is made from the spec, for every record of a preset's run
    assert failed["preset"] == {"name": "pacgan-toy", "comparable": False,
                                "note": "steps 10 < the paper's 400,000 (reduced budget)"}


def test_a_worker_receives_the_spec_alone_and_it_carries_the_plugins(tmp_path):
    spec = resolve("gan", "ring8", 0, steps=4, batch_size=16, eval_points=1, device="cpu", plugins=("x.py",))
    data = json.loads(json.dumps(spec.to_dict()))
    assert from_dict(data) == spec and from_dict(data).plugins == ("x.py",)
    assert resolve("gan", "ring8", 0, steps=4, batch_size=16, eval_points=1, device="cpu").run_id == spec.run_id
    record, samples = executors.run_one(dict(data, plugins=[]))
    assert record["status"] == "ok" and samples is not None
    record, samples = executors.run_one(data)  # x.py does not exist: the run fails, recorded, no raise
    assert record["status"] == "error" and "x.py" in record["error"] and samples is None


def test_a_preset_from_a_plugin_file_is_recorded_with_its_file(tmp_path, registries):
    path = tmp_path / "my_preset.py"
    path.write_text(textwrap.dedent('''
        from bench.presets import PRESETS, VEEGANToy

        @PRESETS.register("veegan-short")
        class Short(VEEGANToy):
            """VEEGAN's protocol at 1,000 steps."""
            published_steps = {d: 1000 for d in ("ring8", "grid25")}
    '''))
    assert plugins.load_plugin(str(path)) == f"file {path.resolve()}"
    assert PRESETS.source("veegan-short") == f"file {path.resolve()}"
