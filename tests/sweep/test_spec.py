"""Specification of sweep specs: TOML form, expansion into resolved configs, stable run ids,
and one-line errors for bad specs before anything runs."""

from __future__ import annotations

import pytest

from circuits.sweep import SweepError, SweepSpec, run_id

SPEC = """
seeds = [0, 1]
[set]
"train.steps" = 20
[grid]
"world.n_pair_labels" = [4, 6]
"world.n_pair_positions" = [2, 3, 4]
"""


def write(tmp_path, text, name="spec.toml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_the_grid_is_the_cartesian_product_times_the_seeds(tmp_path):
    runs = SweepSpec.load(write(tmp_path, SPEC)).expand()
    combos = {(r.values["world.n_pair_labels"], r.values["world.n_pair_positions"], r.values["seed"]) for r in runs}
    assert combos == {(a, b, s) for a in (4, 6) for b in (2, 3, 4) for s in (0, 1)} and len(runs) == 12


def test_every_run_carries_its_values_and_the_base_overrides_in_its_config(tmp_path):
    for r in SweepSpec.load(write(tmp_path, SPEC)).expand():
        assert r.cfg.world.n_pair_labels == r.values["world.n_pair_labels"]
        assert r.cfg.world.n_pair_positions == r.values["world.n_pair_positions"]
        assert r.cfg.train.steps == 20


def test_seeds_set_the_training_and_the_world_seed_unless_untied(tmp_path):
    tied = SweepSpec.from_dict({"seeds": 3}).expand()
    assert [(r.cfg.train.seed, r.cfg.world.seed) for r in tied] == [(0, 0), (1, 1), (2, 2)]
    untied = SweepSpec.from_dict({"seeds": [4, 7], "tie_world_seed": False}).expand()
    assert [(r.cfg.train.seed, r.cfg.world.seed) for r in untied] == [(4, 0), (7, 0)]


def test_on_the_toy_2ds_seeds_set_its_training_data_seed_and_keep_its_test_set():
    spec = SweepSpec.from_dict({"seeds": 2, "set": {"task": "toy2ds", "model.kind": "prefix_lm"}})
    runs = spec.expand()
    assert [(r.cfg.train.seed, r.cfg.toy2ds.train_seed, r.cfg.toy2ds.test_seed) for r in runs] == [(0, 0, 0), (1, 1, 0)]


def test_zip_groups_vary_their_keys_together():
    spec = SweepSpec.from_dict({"zip": [{"model.vision.init_pos_std": [0.1, 0.02], "train.lr": [0.001, 0.002]}]})
    assert [(r.cfg.model.vision.init_pos_std, r.cfg.train.lr) for r in spec.expand()] == [(0.1, 0.001), (0.02, 0.002)]


def test_run_ids_depend_on_the_resolved_config_only(tmp_path):
    reordered = """
seeds = [1, 0]
[grid]
"world.n_pair_positions" = [4, 3, 2]
"world.n_pair_labels" = [6, 4]
[set]
"train.steps" = 20
"""
    ids = {r.run_id for r in SweepSpec.load(write(tmp_path, SPEC)).expand()}
    assert ids == {r.run_id for r in SweepSpec.load(write(tmp_path, reordered, "b.toml")).expand()}
    assert len(ids) == 12


def test_threads_do_not_change_a_run_id_but_any_model_setting_does():
    cfg = SweepSpec.from_dict({}).expand()[0].cfg
    assert run_id(cfg.with_overrides({"train.threads": 2})) == run_id(cfg)
    assert run_id(cfg.with_overrides({"train.lr": 0.002})) != run_id(cfg)


def test_fields_added_later_keep_earlier_run_ids_at_their_default():
    from circuits.config import RunConfig

    # the ids of these configs before world.unseen_pairs and model.decoder.caption_order existed (commit fe8ffac)
    assert run_id(RunConfig()) == "617ae8f73eb3"
    assert run_id(RunConfig().with_overrides(["model.kind=prefix_lm"])) == "93c1787152d8"
    assert run_id(RunConfig().with_overrides(["world.unseen_pairs=heldout_combinations"])) != run_id(RunConfig())


def test_a_quick_profile_replaces_seeds_and_grid_values_and_adds_settings():
    spec = SweepSpec.from_dict({"seeds": 5, "set": {"train.steps": 1500}, "grid": {"world.n_pair_labels": [5, 9, 15]},
                                "quick": {"seeds": 1, "set": {"train.steps": 10}, "grid": {"world.n_pair_labels": [5]}}})
    runs = spec.profile("quick").expand()
    assert [(r.cfg.world.n_pair_labels, r.cfg.train.seed, r.cfg.train.steps) for r in runs] == [(5, 0, 10)]


@pytest.mark.parametrize("text, words", [
    ('[grid]\n"world.n_pair_lables" = [3]\n', ["spec.toml", "world.n_pair_lables"]),
    ('[grid]\n"world.n_pair_labels" = [4, 99]\n', ["spec.toml", "world.n_pair_labels=99", "n_pair_labels must be"]),
    ('[set]\n"train.lr" = "fast"\n', ["spec.toml", "train.lr"]),
    ('[grid]\n"world.n_pair_labels" = []\n', ["spec.toml", "no values"]),
    ('seeds = []\n', ["spec.toml", "empty"]),
    ('[[zip]]\n"train.lr" = [0.1, 0.2]\n"train.weight_decay" = [0.1]\n', ["spec.toml", "train.lr has 2", "train.weight_decay has 1"]),
    ('colour = "red"\n', ["spec.toml", "colour"]),
    ('[grid]\n"train.seed" = [1, 2]\n', ["spec.toml", "seeds"]),
    ('seeds = [0,\n', ["spec.toml", "not valid TOML"]),
    ('[analyze]\nfailures = true\n', ["spec.toml", "[analyze]", "failures", "top1"]),
], ids=["unknown-key", "bad-value", "bad-type", "empty-grid", "no-seeds", "unequal-zip", "unknown-top-key", "seed-in-grid",
        "toml-syntax", "unknown-analysis"])
def test_a_bad_spec_is_one_line_naming_the_file_and_the_key(tmp_path, text, words):
    with pytest.raises(SweepError) as err:
        SweepSpec.load(write(tmp_path, text)).expand()
    message = str(err.value)
    assert "\n" not in message
    for word in words:
        assert word in message
