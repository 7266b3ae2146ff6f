"""kws sweep --folds: sweeps into one folder add up in one table."""

import json

import pytest

from kws.errors import KwsError
from kws.training.sweep import fa_at, merged_rows, write_cv_results


def row(name, mean):
    return {"name": name, "config": f"{name}.yaml", "bytes": 983, "folds": [0, 1],
            "int_mean": mean, "int_std": 0.01, "float_mean": mean, "float_std": 0.01,
            "int_per_fold": [mean, mean], "clips": 10, "worst_class": "off",
            "per_class": {"yes": 0.9, "off": 0.5}}


def test_a_later_sweep_keeps_earlier_rows_and_replaces_its_own(tmp_path):
    write_cv_results([row("a", 0.70), row("b", 0.75)], tmp_path)
    rows = merged_rows(tmp_path / "cv_results.json", [row("b", 0.80), row("c", 0.60)])
    assert [(r["name"], r["int_mean"]) for r in rows] == [("a", 0.70), ("b", 0.80), ("c", 0.60)]
    write_cv_results(rows, tmp_path)
    table = (tmp_path / "cv_table.md").read_text()
    assert "| a |" in table and "0.800 ± 0.010" in table and "0.750" not in table
    assert [r["name"] for r in json.loads((tmp_path / "cv_results.json").read_text())] == \
        ["a", "b", "c"]
    (tmp_path / "cv_results.json").write_text("{not json")        # a damaged file: new rows
    assert merged_rows(tmp_path / "cv_results.json", [row("d", 0.5)]) == [row("d", 0.5)]
    assert merged_rows(tmp_path / "none.json", [row("d", 0.5)]) == [row("d", 0.5)]


def test_false_accepts_column_and_threshold_lookup(tmp_path):
    listened = dict(row("b", 0.80), fa_threshold=0.985, fa_per_fold=[100.0, 50.0],
                    fa_per_hour=75.0, fa_hours=0.7)
    write_cv_results([row("a", 0.70), listened], tmp_path)
    lines = (tmp_path / "cv_table.md").read_text().splitlines()
    assert "FA/h (threshold)" in lines[0] and lines[1].count("|") == lines[0].count("|")
    assert "| 75 (0.985) |" in lines[3] and "| – |" in lines[2]
    write_cv_results([row("a", 0.70)], tmp_path)          # no row listened: no column
    assert "FA/h" not in (tmp_path / "cv_table.md").read_text()
    curve = {"0.98": 120.0, "0.985": 75.0, "0.99": 40.0}
    assert fa_at(curve, 0.985) == 75.0
    with pytest.raises(KwsError, match="not on the false-accept curve"):
        fa_at(curve, 0.986)


def test_size_curve_picture(tmp_path):
    from kws.training.sweep import plot_size_curve

    rows = [dict(row("s1k", 0.80), bytes=983), dict(row("s512", 0.70), bytes=505)]
    plot_size_curve(rows, tmp_path / "curve.png")
    assert (tmp_path / "curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_fold_teachers_one_folder_or_an_ensemble(tmp_path):
    """Trained teachers are reused per fold: one config gives its folder, several a tuple in
    the order given; a teacher that distils needs its own teacher listed before it."""
    from kws.training.sweep import fold_teachers

    for name in ("teacher_a", "teacher_b"):
        (tmp_path / f"teacher-{name}" / "fold2").mkdir(parents=True)
        (tmp_path / f"teacher-{name}" / "fold2" / "best.pt").write_bytes(b"")
    a, b = tmp_path / "teacher-teacher_a" / "fold2", tmp_path / "teacher-teacher_b" / "fold2"
    assert fold_teachers(["x/teacher_a.yaml"], tmp_path, 5, 2) == str(a)
    assert fold_teachers(["x/teacher_a.yaml", "x/teacher_b.yaml"], tmp_path, 5, 2) == (str(a),
                                                                                     str(b))
    distils = tmp_path / "distils.yaml"
    distils.write_text("train: {distill_weight: 0.5}\n")
    with pytest.raises(KwsError, match="list its own teacher"):
        fold_teachers([distils], tmp_path, 5, 2)


def test_fold_config_names_the_folds_own_start_and_mined_windows():
    """`{fold}` in init_from and hard_negative_dirs becomes the fold number; the rest stays."""
    from kws.config import Config
    from kws.training.sweep import fold_config
    from kws.training.train import replace

    c = replace(Config(), train={"init_from": "runs/cvw/w/fold{fold}/run",
                                 "hard_negative_dirs": ("data/mined/cvw-fold{fold}",
                                                        "data/mined/shared"),
                                 "teacher": "runs/t"})
    f = fold_config(c, 5, 3, "runs/cv/teacher/fold3")
    assert (f.data.folds, f.data.fold) == (5, 3)
    assert f.train.init_from == "runs/cvw/w/fold3/run"
    assert f.train.hard_negative_dirs == ("data/mined/cvw-fold3", "data/mined/shared")
    assert f.train.teacher == "runs/cv/teacher/fold3"
    plain = fold_config(Config(), 5, 1)
    assert plain.train == Config().train and plain.data.fold == 1


def test_a_row_pools_every_finished_fold_not_only_this_sweeps(tmp_path):
    from kws.training.sweep import scored_folds
    for k in (0, 3):                                    # finished by earlier sweeps
        (tmp_path / f"fold{k}" / "model").mkdir(parents=True)
        (tmp_path / f"fold{k}" / "model" / "model.json").write_text("{}")
    (tmp_path / "fold2" / "run").mkdir(parents=True)    # another process is still training it
    assert scored_folds(tmp_path, 5, [1]) == [0, 1, 3]
    assert scored_folds(tmp_path, 5, []) == [0, 3]
    assert scored_folds(tmp_path, 3, [1]) == [0, 1]     # fold 3 of another fold count: not ours
