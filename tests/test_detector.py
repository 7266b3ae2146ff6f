"""The detector settings: one owner (kws.detect.detector) of the model folder's detector.json,
and their hash beside the model hash."""

import json
from pathlib import Path

from kws.codegen.export import listen_schedule
from kws.detect.detector import (DEFAULTS, DetectorSettings, load_settings, save_settings,
                                 settings_hash, stored_settings)
from kws.quant.modelfile import load_model

SHIPPED = Path(__file__).resolve().parent.parent / "models" / "default"
SHIPPED_HASH = "716d04cc91140c5c398a0b6a75313e6d"   # the first characters of models/default's hash


def test_every_field_of_detector_json_is_read_back_and_written_the_same(tmp_path):
    doc = json.loads((SHIPPED / "detector.json").read_text())
    s = load_settings(SHIPPED)
    assert (s.threshold, s.instances, s.smooth_windows, s.refractory_s, s.chosen_by) == \
        (doc["threshold"], doc["instances"], doc["smooth_windows"], doc["refractory_s"],
         doc["chosen_by"])
    save_settings(tmp_path, s)
    assert (tmp_path / "detector.json").read_text() == (SHIPPED / "detector.json").read_text()


def test_no_file_means_the_defaults_and_the_schedule_follows_the_settings(tmp_path):
    assert load_settings(tmp_path) == DEFAULTS
    assert stored_settings(tmp_path) == {"threshold": 0.7, "instances": 2}
    model = load_model(SHIPPED)
    assert listen_schedule(model).instances == load_settings(model).instances


def test_the_settings_hash_covers_what_changes_behaviour_and_the_model_hash_is_unchanged(tmp_path):
    model = load_model(SHIPPED)
    assert model.hash.startswith(SHIPPED_HASH)
    h = settings_hash(SHIPPED)
    assert settings_hash(model) == h and len(h) == 64
    save_settings(tmp_path, DetectorSettings(**{**load_settings(SHIPPED).__dict__,
                                                "chosen_by": "someone else"}))
    assert settings_hash(tmp_path) == h          # where they came from is not hashed
    save_settings(tmp_path, DetectorSettings(threshold=0.9))
    assert settings_hash(tmp_path) != h
