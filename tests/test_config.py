"""Specification of `circuits.config`: defaults, overrides, validation and serialisation."""

from __future__ import annotations

import json

import pytest

from circuits.config import (
    FORMAT_VERSION,
    EncoderConfig,
    ModelConfig,
    RunConfig,
    TrainConfig,
    WorldConfig,
    load_config_file,
    n_position_pairs,
)
from circuits.errors import CircuitsError, ConfigError


def assert_one_line_error(excinfo: pytest.ExceptionInfo, *must_mention: str) -> None:
    message = str(excinfo.value)
    assert message and "\n" not in message, f"ConfigError must be one line, got {message!r}"
    for word in must_mention:
        assert word in message, f"{message!r} should mention {word!r}"


# ------------------------------------------------------------------------------ defaults
def test_default_config_is_valid_and_matches_the_paper_recipe():
    cfg = RunConfig()
    cfg.validate()
    assert (cfg.world.width, cfg.world.height, cfg.world.n_labels, cfg.world.n_pair_labels) == (10, 1, 20, 15)
    assert cfg.model.vision.mask == "bidirectional" and cfg.model.text.mask == "causal"
    assert cfg.train.batch_size is None  # full batch


def test_config_error_is_a_value_error_and_a_circuits_error():
    assert issubclass(ConfigError, ValueError) and issubclass(ConfigError, CircuitsError)


# ----------------------------------------------------------------------------- overrides
def test_overrides_parse_ints_floats_bools_null_and_strings():
    cfg = RunConfig().with_overrides(
        [
            "train.steps=500",
            "train.lr=3e-4",
            "model.vision.attn_only=false",
            "model.text.qkv_bias=False",
            "train.batch_size=null",
            "model.text.init_weight_std=0.02",
            "world.captions=bidirectional",
            "model.vision.n_layers=2",
        ]
    )
    assert cfg.train.steps == 500 and type(cfg.train.steps) is int
    assert cfg.train.lr == pytest.approx(3e-4) and type(cfg.train.lr) is float
    assert cfg.model.vision.attn_only is False
    assert cfg.model.text.qkv_bias is False
    assert cfg.train.batch_size is None
    assert cfg.model.text.init_weight_std == pytest.approx(0.02)
    assert cfg.world.captions == "bidirectional"
    assert cfg.model.vision.n_layers == 2


def test_overrides_coerce_whole_numbers_to_declared_types():
    cfg = RunConfig().with_overrides(["train.steps=500.0", "train.lr=1", "train.batch_size=64"])
    assert cfg.train.steps == 500 and type(cfg.train.steps) is int
    assert cfg.train.lr == 1.0 and type(cfg.train.lr) is float
    assert cfg.train.batch_size == 64


def test_overrides_accept_a_dict_and_leave_the_original_untouched():
    base = RunConfig()
    cfg = base.with_overrides({"train.steps": 7, "world.width": 6, "world.n_pair_positions": 3})
    assert (cfg.train.steps, cfg.world.width, cfg.world.n_pair_positions) == (7, 6, 3)
    assert base == RunConfig()


def test_null_can_be_overridden_back_to_a_number():
    cfg = RunConfig().with_overrides(["train.batch_size=32"]).with_overrides(["train.batch_size=null"])
    assert cfg.train.batch_size is None


@pytest.mark.parametrize(
    "override, key",
    [
        ("train.stepz=5", "train.stepz"),
        ("model.vision.n_layer=2", "model.vision.n_layer"),
        ("nonsense=1", "nonsense"),
        ("world.width.x=1", "world.width.x"),
    ],
)
def test_unknown_override_key_raises_one_line_error_naming_it(override, key):
    with pytest.raises(ConfigError) as excinfo:
        RunConfig().with_overrides([override])
    assert_one_line_error(excinfo, key)


def test_overriding_a_whole_section_is_rejected():
    with pytest.raises(ConfigError) as excinfo:
        RunConfig().with_overrides(["model.vision=3"])
    assert_one_line_error(excinfo, "model.vision")


@pytest.mark.parametrize("bad", ["train.steps", "=5", "  =5"])
def test_malformed_override_is_rejected(bad):
    with pytest.raises(ConfigError) as excinfo:
        RunConfig().with_overrides([bad])
    assert_one_line_error(excinfo)


@pytest.mark.parametrize(
    "override, key",
    [
        ("train.steps=abc", "train.steps"),
        ("train.steps=1.5", "train.steps"),
        ("train.steps=true", "train.steps"),
        ("train.lr=fast", "train.lr"),
        ("train.lr=true", "train.lr"),
        ("model.vision.attn_only=maybe", "model.vision.attn_only"),
        ("model.vision.attn_only=1", "model.vision.attn_only"),
        ("train.device=3", "train.device"),
        ("model.text.normalization=post", "model.text.normalization"),
        ("world.captions=up", "world.captions"),
    ],
)
def test_wrongly_typed_value_raises_one_line_error_naming_the_key(override, key):
    with pytest.raises(ConfigError) as excinfo:
        RunConfig().with_overrides([override])
    assert_one_line_error(excinfo, key)


@pytest.mark.parametrize("value", ["NaN", "Infinity", "-Infinity"])
def test_non_finite_value_for_an_integer_key_raises_config_error(value):
    """json.loads accepts NaN/Infinity; they must end in a ConfigError, not a raw ValueError/OverflowError."""
    with pytest.raises(ConfigError) as excinfo:
        RunConfig().with_overrides([f"train.steps={value}"])
    assert_one_line_error(excinfo, "train.steps")


@pytest.mark.parametrize(
    "key, value",
    [
        ("train.steps", -1),
        ("train.lr", 0),
        ("train.lr", -1e-3),
        ("train.beta1", 1.0),
        ("train.beta2", -0.1),
        ("train.weight_decay", -0.1),
        ("train.batch_size", 1),
        ("train.eval_every", 0),
        ("train.device", "tpu"),
        ("model.vision.n_layers", 0),
        ("model.vision.n_heads", 0),
        ("model.text.d_model", 0),
        ("model.text.d_head", 0),
        ("model.vision.d_mlp", 0),
        ("model.vision.dropout", 1.0),
        ("model.text.dropout", -0.5),
        ("model.vision.init_embed_std", 0),
        ("model.text.init_pos_std", -1),
        ("model.vision.init_weight_std", 0),
        ("model.logit_scale_max", 0),
        ("world.width", 1),
        ("world.height", 0),
        ("world.n_labels", 1),
        ("world.n_single_positions", 0),
        ("world.n_pair_positions", 0),
    ],
)
def test_out_of_range_value_raises_one_line_error_naming_the_key(key, value):
    with pytest.raises(ConfigError) as excinfo:
        RunConfig().with_overrides({key: value})
    # beta1 and beta2 share one check whose message names "train.beta1/beta2"
    assert_one_line_error(excinfo, "beta2" if key == "train.beta2" else key)


def test_infinite_learning_rate_is_out_of_range():
    with pytest.raises(ConfigError) as excinfo:
        RunConfig().with_overrides(["train.lr=Infinity"])
    assert_one_line_error(excinfo, "train.lr")


@pytest.mark.parametrize("base", [0, -10000.0])
def test_non_positive_rotary_base_is_out_of_range(base):
    """base ** (-i/half) is inf/nan for base <= 0: such a config must not validate."""
    with pytest.raises(ConfigError) as excinfo:
        RunConfig().with_overrides({"model.vision.positional": "rotary", "model.vision.rotary_base": base})
    assert_one_line_error(excinfo, "model.vision.rotary_base")


def test_rotary_needs_an_even_head_dimension():
    with pytest.raises(ConfigError) as excinfo:
        RunConfig().with_overrides({"model.text.positional": "rotary", "model.text.d_head": 7})
    assert_one_line_error(excinfo, "model.text.d_head")
    RunConfig().with_overrides({"model.text.positional": "learned", "model.text.d_head": 7})  # fine without rotary


@pytest.mark.parametrize("device", ["auto", "cpu", "cuda", "cuda:1", "mps"])
def test_known_device_names_are_accepted(device):
    assert RunConfig().with_overrides({"train.device": device}).train.device == device


# -------------------------------------------------------------------------------- worlds
@pytest.mark.parametrize(
    "overrides, key",
    [
        ({"world.n_pair_labels": 21}, "world.n_pair_labels"),  # more pair labels than labels
        ({"world.n_labels": 5, "world.n_pair_labels": 6}, "world.n_pair_labels"),
        ({"world.n_pair_labels": 1}, "world.n_pair_labels"),  # no ordered pair at all
        ({"world.n_pair_positions": 46}, "world.n_pair_positions"),  # 10 columns: 45 position pairs
        ({"world.width": 4, "world.n_single_positions": 2, "world.n_pair_positions": 7}, "world.n_pair_positions"),
        ({"world.n_single_positions": 11}, "world.n_single_positions"),  # 10 pixels
        ({"world.width": 1, "world.height": 4}, "world.width"),  # one column: nothing is left of anything
    ],
)
def test_impossible_world_is_rejected_with_a_one_line_error(overrides, key):
    with pytest.raises(ConfigError) as excinfo:
        RunConfig().with_overrides(overrides)
    assert_one_line_error(excinfo, key)


def test_world_limits_are_inclusive():
    cfg = RunConfig().with_overrides(
        {"world.width": 4, "world.n_pair_positions": 6, "world.n_single_positions": 4, "world.n_pair_labels": 20}
    )
    assert (cfg.world.n_pair_positions, cfg.world.n_single_positions, cfg.world.n_pair_labels) == (6, 4, 20)


def test_a_2d_world_has_more_positions_to_choose_from():
    # 3 x 3 grid: 9 pixels and 3^2 * C(3, 2) = 27 position pairs
    cfg = RunConfig().with_overrides(
        {"world.width": 3, "world.height": 3, "world.n_single_positions": 9, "world.n_pair_positions": 27}
    )
    assert cfg.world.n_pixels == 9
    with pytest.raises(ConfigError):
        cfg.with_overrides({"world.n_pair_positions": 28})


@pytest.mark.parametrize("width, height", [(2, 1), (3, 1), (10, 1), (4, 4), (5, 2), (2, 3)])
def test_n_position_pairs_counts_pixel_pairs_with_a_strictly_smaller_column(width, height):
    cfg = WorldConfig(width=width, height=height)
    pixels = range(width * height)
    brute = sum(1 for a in pixels for b in pixels if a % width < b % width)
    assert n_position_pairs(cfg) == brute


def test_validate_rejects_a_directly_constructed_bad_config():
    cfg = RunConfig(train=TrainConfig(eval_every=0))
    with pytest.raises(ConfigError) as excinfo:
        cfg.validate()
    assert_one_line_error(excinfo, "train.eval_every")


# --------------------------------------------------------------------------- round trips
def test_to_dict_carries_the_format_version():
    assert RunConfig().to_dict()["format_version"] == FORMAT_VERSION


def _varied_configs() -> list[RunConfig]:
    return [
        RunConfig(),
        RunConfig(
            world=WorldConfig(width=5, height=3, n_labels=7, n_pair_labels=4, captions="bidirectional", seed=9),
            model=ModelConfig(
                vision=EncoderConfig(n_layers=2, d_model=17, positional="rotary", d_head=6, normalization="pre"),
                text=EncoderConfig(mask="causal", attn_only=False, positional="none", init_weight_std=0.3),
                logit_scale_max=42.0,
            ),
            train=TrainConfig(steps=3, batch_size=16, device="cpu", seed=5),
        ),
    ]


@pytest.mark.parametrize("cfg", _varied_configs(), ids=["default", "varied"])
def test_to_dict_from_dict_round_trip(cfg):
    assert RunConfig.from_dict(cfg.to_dict()) == cfg


@pytest.mark.parametrize("cfg", _varied_configs(), ids=["default", "varied"])
def test_json_round_trip(cfg):
    assert RunConfig.from_dict(json.loads(cfg.to_json())) == cfg


def test_from_dict_fills_missing_fields_with_defaults():
    cfg = RunConfig.from_dict({"train": {"steps": 12}, "model": {"vision": {"n_heads": 2}}})
    assert cfg.train.steps == 12 and cfg.model.vision.n_heads == 2
    assert cfg.train.lr == TrainConfig().lr and cfg.world == WorldConfig()
    assert cfg.model.vision.mask == "bidirectional" and cfg.model.text.mask == "causal"


def test_partial_text_section_keeps_the_text_encoder_causal():
    """Missing fields take the defaults of *their section*: the text encoder's default is causal.

    A config file that only changes, say, ``model.text.n_heads`` must not silently turn the text
    encoder bidirectional.
    """
    cfg = RunConfig.from_dict({"model": {"text": {"n_heads": 2}}})
    assert cfg.model.text.n_heads == 2
    assert cfg.model.text.mask == "causal"
    assert cfg.model.text == RunConfig().model.text.__class__(**{**vars(RunConfig().model.text), "n_heads": 2})


def test_from_dict_rejects_unknown_nested_key_and_unknown_version():
    with pytest.raises(ConfigError) as excinfo:
        RunConfig.from_dict({"model": {"vision": {"heads": 2}}})
    assert_one_line_error(excinfo, "model.vision.heads")
    with pytest.raises(ConfigError) as excinfo:
        RunConfig.from_dict({"format_version": FORMAT_VERSION + 1})
    assert_one_line_error(excinfo, "format_version")
    with pytest.raises(ConfigError) as excinfo:
        RunConfig.from_dict({"train": 5})
    assert_one_line_error(excinfo, "train")


def test_from_dict_validates():
    data = RunConfig().to_dict()
    data["world"]["n_pair_labels"] = 30
    with pytest.raises(ConfigError) as excinfo:
        RunConfig.from_dict(data)
    assert_one_line_error(excinfo, "world.n_pair_labels")


def test_load_config_file(tmp_path):
    path = tmp_path / "cfg.json"
    path.write_text(json.dumps({"train": {"steps": 9}}))
    assert load_config_file(str(path)) == RunConfig().with_overrides(["train.steps=9"])
    with pytest.raises(ConfigError) as excinfo:
        load_config_file(str(tmp_path / "missing.json"))
    assert_one_line_error(excinfo, "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ConfigError) as excinfo:
        load_config_file(str(bad))
    assert_one_line_error(excinfo, "bad.json")
    listed = tmp_path / "list.json"
    listed.write_text("[1, 2]")
    with pytest.raises(ConfigError):
        load_config_file(str(listed))
