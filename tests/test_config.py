"""Bad configs stop at construction with the offending field named; good ones load from YAML."""

import pytest

from reasonlens.hrm import TRM, ConfigError, HRMACTv1, HRMConfig

BASE = dict(seq_len=9, vocab_size=5, hidden_size=32, num_heads=4)


@pytest.mark.parametrize(
    ("overrides", "fragments"),
    [
        (dict(hidden_size=30, num_heads=4), ["hidden_size (30) must be divisible by num_heads (4)"]),
        (dict(pos_encodings="alibi"), ["pos_encodings", "'rope' or 'learned'", "'alibi'"]),
        (dict(forward_dtype="float8"), ["forward_dtype", "'bfloat16', 'float16' or 'float32'"]),
        (dict(H_cycles=0), ["H_cycles", "greater than or equal to 1"]),
        (dict(L_cycles=-2), ["L_cycles", "greater than or equal to 1"]),
        (dict(halt_max_steps=0), ["halt_max_steps"]),
        (dict(halt_exploration_prob=1.5), ["halt_exploration_prob"]),
        (dict(hidden_sizee=32), ["hidden_sizee", "unknown field", "allowed fields", "hidden_size"]),
        (dict(causal=True), ["causal", "bidirectional"]),
        (dict(hidden_size=36, num_heads=4), ["even head dim"]),
    ],
)
def test_invalid_config_names_the_field(overrides, fragments):
    with pytest.raises(ConfigError) as info:
        HRMACTv1({**BASE, **overrides})
    message = str(info.value)
    assert message.startswith("invalid HRMConfig config")
    for fragment in fragments:
        assert fragment in message


def test_missing_required_field_is_named():
    with pytest.raises(ConfigError, match="seq_len: Field required"):
        HRMACTv1(dict(vocab_size=5))


def test_not_a_dict():
    with pytest.raises(ConfigError, match="needs a dict"):
        HRMACTv1(["seq_len", 9])


def test_assignment_is_validated_too():
    model = HRMACTv1(BASE)
    with pytest.raises(ValueError, match="halt_max_steps"):
        model.config.halt_max_steps = 0
    model.config.halt_max_steps = 32  # inference-time scaling: a valid change is accepted
    assert model.config.halt_max_steps == 32


def test_trm_allows_no_positions_hrm_does_not():
    TRM({**BASE, "pos_encodings": "none", "mlp_t": True})
    with pytest.raises(ConfigError, match="pos_encodings"):
        HRMACTv1({**BASE, "pos_encodings": "none"})


def test_trm_prefix_must_hold_the_puzzle_embedding():
    with pytest.raises(ConfigError, match="does not fit in puzzle_emb_len"):
        TRM({**BASE, "puzzle_emb_ndim": 100, "puzzle_emb_len": 2})


def test_config_object_and_derived_lengths():
    cfg = HRMConfig.from_dict({**BASE, "puzzle_emb_ndim": 40})
    assert cfg.prefix_len == 2 and cfg.total_seq_len == 11 and cfg.head_dim == 8
    assert HRMACTv1(cfg).config == cfg
