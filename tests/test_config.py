import pytest

from kws.config import FeatureConfig, load_config
from kws.errors import KwsError


def test_default_config_file_loads_with_a_20ms_hop_and_the_budget():
    c = load_config("configs/default.yaml")
    assert c.features.hop_length == 320 and c.features.n_frames == 49
    assert c.model.budget_bytes == 1024


def test_one_second_gives_98_frames():
    assert FeatureConfig().n_frames == 98


def write(tmp_path, text):
    p = tmp_path / "c.yaml"
    p.write_text(text)
    return p


@pytest.mark.parametrize("text,names", [
    ("features:\n  n_mel: 40\n", "features.n_mel"),
    ("featurez:\n  n_mels: 40\n", "featurez"),
    ("features:\n  n_mels: forty\n", "features.n_mels"),
    ("features:\n  n_mels: 40.5\n", "features.n_mels"),
    ("features:\n  fmin: true\n", "features.fmin"),
    ("data:\n  task: v3-7\n", "data.task"),
    ("data:\n  split: random\n", "data.split"),
    ("features: 3\n", "features"),
])
def test_bad_keys_and_types_name_the_key(tmp_path, text, names):
    with pytest.raises(KwsError) as e:
        load_config(write(tmp_path, text))
    assert names in str(e.value)


def test_ints_are_accepted_for_floats_and_null_for_optional(tmp_path):
    c = load_config(write(tmp_path, "features:\n  fmin: 0\ndata:\n  unknown_pct: null\n"))
    assert c.features.fmin == 0.0 and isinstance(c.features.fmin, float)
    assert c.data.unknown_pct is None


def test_missing_file_and_bad_yaml_are_one_line_errors(tmp_path):
    with pytest.raises(KwsError, match="cannot read config"):
        load_config(tmp_path / "nope.yaml")
    with pytest.raises(KwsError, match="not valid YAML"):
        load_config(write(tmp_path, "features: [\n"))


def test_inconsistent_feature_values_are_refused():
    with pytest.raises(KwsError):
        FeatureConfig(win_length=600, n_fft=512)
    with pytest.raises(KwsError):
        FeatureConfig(fmax=9000.0)


def test_a_config_lays_its_sections_over_its_base(tmp_path):
    (tmp_path / "base.yaml").write_text(
        "features:\n  n_mels: 40\n  hop_length: 320\ntrain:\n  lr: 0.01\n  snr_db: [5, 30]\n")
    (tmp_path / "sub").mkdir()
    child = tmp_path / "sub" / "child.yaml"
    child.write_text("base: ../base.yaml\nfeatures:\n  n_mels: 32\ntrain:\n  snr_db: [0, 20]\n")
    c = load_config(child)
    assert c.features.n_mels == 32 and c.features.hop_length == 320   # merged, not replaced
    assert c.train.lr == 0.01 and c.train.snr_db == (0.0, 20.0)        # a list replaces
    grandchild = tmp_path / "g.yaml"
    grandchild.write_text("base: sub/child.yaml\ntrain:\n  lr: 0.003\n")
    g = load_config(grandchild)
    assert (g.features.n_mels, g.train.lr, g.train.snr_db) == (32, 0.003, (0.0, 20.0))


def test_a_bad_base_is_a_one_line_error_naming_it(tmp_path):
    with pytest.raises(KwsError, match="nope.yaml.*the base of"):
        load_config(write(tmp_path, "base: nope.yaml\n"))
    with pytest.raises(KwsError, match="leads back to itself"):
        load_config(write(tmp_path, "base: c.yaml\n"))
    with pytest.raises(KwsError, match="base: is the path"):
        load_config(write(tmp_path, "base: [a.yaml]\n"))
    (tmp_path / "b.yaml").write_text("features:\n  n_mel: 40\n")
    with pytest.raises(KwsError, match="features.n_mel"):                # the base's keys are checked
        load_config(write(tmp_path, "base: b.yaml\n"))
