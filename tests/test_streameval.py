"""Streaming evaluation: the window schedule, the seeded stream and the false-accept counter."""

from types import SimpleNamespace

import numpy as np
import pytest

from kws.errors import KwsError
from kws.checks.streameval import choose_operating_point, keyword_thresholds, score_detections
from kws.data.streamgen import Event, StreamSpec, make_stream, voiced_span
from kws.detect.windows import Schedule, WindowRunner, run_windows
from kws.quant.intmodel import from_torch
from tests.test_intmodel import random_model

SR = 16000


def ev(word, a, b):
    return Event(word, f"{word}.wav", a - 0.1, a, b, 10.0)


def test_false_accept_counter_on_a_hand_made_event_list():
    events = [ev("yes", 1.0, 1.5), ev("no", 5.0, 5.4), ev("_unknown_", 9.0, 9.5),
              ev("yes", 12.0, 12.6)]
    detections = [
        (1.8, "yes"),    # hit: yes voiced 1.0-1.5 inside [0.8, 1.8]
        (2.3, "yes"),    # the same yes again (already claimed): false accept, during a word
        (5.9, "left"),   # wrong word during "no": false accept (and "no" is missed)
        (9.6, "up"),     # on an unknown word: false accept
        (20.0, "go"),    # in noise only: false accept
        (13.5, "yes"),   # hit: yes voiced 12.0-12.6 overlaps [12.5, 13.5]
    ]
    s = score_detections(events, detections, span_s=1.0).summary(hours=0.5)
    assert s["events"] == 3 and s["misses"] == 1
    assert s["per_keyword"]["no"]["misses"] == 1 and s["per_keyword"]["yes"]["misses"] == 0
    assert s["false_accepts"] == 4 and s["fa_per_hour"] == 8.0
    assert s["per_keyword"]["yes"]["false_accepts"] == 1
    assert s["per_keyword"]["left"]["false_accepts"] == 1
    assert s["fa_on_words"] == 3 and s["fa_in_noise"] == 1
    # misses by the SNR the keyword was placed at (ev() places every word at 10 dB)
    assert s["miss_rate_by_snr"] == {10.0: {"events": 3, "misses": 1, "miss_rate": 1 / 3}}
    quiet = Event("go", "go.wav", 0.9, 1.0, 1.4, 20.0)
    loud_noise = [Event("go", "go.wav", t - 0.1, t, t + 0.4, 5.0) for t in (4.0, 8.0)]
    by = score_detections([quiet, *loud_noise], [(1.5, "go"), (4.5, "go")],
                          span_s=1.0).summary(1.0)["miss_rate_by_snr"]
    assert by == {5.0: {"events": 2, "misses": 1, "miss_rate": 0.5},
                  20.0: {"events": 1, "misses": 0, "miss_rate": 0.0}}
    # a detection whose window ends before the word starts does not claim it
    late = score_detections([ev("go", 3.0, 3.5)], [(2.9, "go")], span_s=1.0).summary(1.0)
    assert late["misses"] == 1 and late["false_accepts"] == 1


def _clips(rng, n, word):
    out = []
    for i in range(n):
        a = np.zeros(SR)
        a[4000 + 100 * i:9000] = rng.normal(0, 0.1, 5000 - 100 * i)  # voiced 0.25 s .. 0.5625 s
        out.append((f"{word}{i}.wav", word, a.astype(np.float32)))
    return out


def test_stream_is_deterministic_and_its_keyword_times_are_right():
    rng = np.random.default_rng(0)
    kws, unk = _clips(rng, 5, "yes") + _clips(rng, 5, "go"), _clips(rng, 3, "_unknown_")
    noise = [("n.wav", rng.normal(0, 0.01, 3 * SR))]
    spec = StreamSpec(seconds=60.0, seed=3, snrs_db=(10.0, 20.0))
    a1, e1 = make_stream(kws, unk, noise, spec, SR)
    a2, e2 = make_stream(kws, unk, noise, spec, SR)
    assert np.array_equal(a1, a2) and e1 == e2
    a3, _ = make_stream(kws, unk, noise, StreamSpec(seconds=60.0, seed=4), SR)
    assert not np.array_equal(a1, a3)
    assert len(a1) == 60 * SR and len(e1) >= 6
    by_name = {name: clip for name, _, clip in kws + unk}
    for e in e1:
        t = round(e.start_s * SR)
        clip = by_name[e.clip]
        a, b = voiced_span(clip, SR)
        assert (e.voice_start_s, e.voice_end_s) == ((t + a) / SR, (t + b) / SR)
        # the clip is really there: the stream minus the noise under it is the clip
        seg = a1[t + a:t + b].astype(np.float64)
        assert np.corrcoef(seg, clip[a:b])[0, 1] > 0.9
        # and the SNR is the stated one (noise measured just before the word)
        speech = np.sqrt(np.mean(clip[a:b].astype(np.float64) ** 2))
        noise_rms = np.sqrt(np.mean(a1[t:t + 3000].astype(np.float64) ** 2))
        assert 20 * np.log10(speech / noise_rms) == pytest.approx(e.snr_db, abs=1.0)
    assert all(x.start_s + 1 <= y.start_s for x, y in zip(e1, e1[1:]))


def test_voiced_span_finds_the_loud_part():
    a = np.zeros(SR, np.float32)
    a[3200:8000] = 0.5
    assert voiced_span(a, SR) == (3200, 8000)


@pytest.mark.parametrize("instances", [1, 2, 5])
def test_batched_windows_equal_the_frame_by_frame_schedule(instances):
    im = from_torch(random_model(instances, hidden=6, rank_w=3, rank_u=3))
    s = Schedule(period=10, instances=instances, pool=3)
    xq = np.random.default_rng(1).integers(-128, 128, (57, 32))
    batched = run_windows(im, xq, s)
    runner = WindowRunner(im, s)
    stepped = [r for x in xq if (r := runner.push(x)) is not None]
    assert len(stepped) == len(batched) == s.n_windows(57) == (57 - 10) // s.stride + 1
    assert np.array_equal(np.array(stepped), batched)
    # each window is a fresh clip: equal to running its frames alone from h = 0
    j = len(batched) - 1
    alone = im.run(xq[None, j * s.stride:j * s.stride + 10])[0, -3:].sum(0)
    assert np.array_equal(batched[j], alone)


def test_schedule_for_a_model_and_bad_schedules():
    model = SimpleNamespace(features=SimpleNamespace(clip_samples=16000, win_length=400,
                                                     hop_length=320), pool_frames=5)
    s = Schedule.for_model(model, 2)
    assert (s.period, s.stride, s.pool) == (50, 25, 5)   # 49 frames rounded up to 2 x 25
    assert Schedule.for_model(model, 1).period == 49
    with pytest.raises(KwsError):
        Schedule(50, 3, 5)
    with pytest.raises(KwsError):
        Schedule(10, 2, 11)


def test_operating_point_fewest_misses_within_the_false_accept_goal():
    curve = [{"threshold": 0.5, "miss_rate": 0.05, "fa_per_hour": 9.0},
             {"threshold": 0.7, "miss_rate": 0.08, "fa_per_hour": 2.0},
             {"threshold": 0.9, "miss_rate": 0.20, "fa_per_hour": 0.0}]
    p = choose_operating_point(curve)
    assert p["threshold"] == 0.7 and p["goal_met"]
    p = choose_operating_point([dict(r, fa_per_hour=r["fa_per_hour"] + 5) for r in curve])
    assert p["threshold"] == 0.9 and not p["goal_met"]


def test_keyword_thresholds_fewest_misses_in_all_within_the_goal():
    """a: 10 events, b: 10 events. One threshold for both: 0.9 misses 3 at 1.5 FA/h. A
    threshold each: a at 0.9 and b at 0.5 miss 1 at 2.0 FA/h."""
    rows = {0.5: {"a": (0.0, 3.0), "b": (0.0, 0.5)},
            0.9: {"a": (0.1, 1.5), "b": (0.2, 0.0)},
            0.99: {"a": (0.5, 0.0), "b": (0.2, 0.0)}}
    curve = [{"threshold": th, "per_keyword": pk} for th, pk in rows.items()]
    events = [SimpleNamespace(word=w) for w in ("a", "b") for _ in range(10)]
    assert keyword_thresholds(curve, events) == {"a": 0.9, "b": 0.5}
    # no false accepts allowed: a must go to 0.99; for b, 0.9 and 0.99 miss as many with
    # none, and the higher of equals is taken
    assert keyword_thresholds(curve, events, fa_target=0.0) == {"a": 0.99, "b": 0.99}
    assert keyword_thresholds(curve, events, fa_target=100.0) == {"a": 0.5, "b": 0.5}
    never = [dict(r, per_keyword={w: (m, fa + 5) for w, (m, fa) in r["per_keyword"].items()})
             for r in curve]
    assert keyword_thresholds(never, events) is None


def test_false_accepts_on_negative_audio(tmp_path):
    """Every detection on audio said to hold no keyword is a false accept (here the audio is
    keywords, so that there are some); fewer at higher thresholds; the hours are the files'
    length plus the gaps."""
    import soundfile as sf

    from kws.data.audio import load_audio
    from kws.quant.modelfile import load_model
    from kws.checks.streameval import negative_files, negatives_curve
    from tests.conftest import SC_MINI

    folder = tmp_path / "neg" / "speech"
    folder.mkdir(parents=True)
    words = [load_audio(f) for w in ("yes", "no", "left", "stop")
             for f in sorted((SC_MINI / w).glob("*.wav"))]
    for k in range(3):
        sf.write(folder / f"n{k}.flac", np.concatenate(words[k::3])[:SR * 4], SR)
    (folder / "notes.txt").write_text("not audio")
    assert [f.name for f in negative_files([tmp_path / "neg"])] == ["n0.flac", "n1.flac",
                                                                     "n2.flac"]
    model = load_model("models/default")
    r = negatives_curve(model, [tmp_path / "neg"], gap_s=0.5, side="all")  # every file
    assert r["files"] == 3 and r["hours"] == pytest.approx(3 * 4.5 / 3600, abs=1e-4)
    fas = [row["false_accepts"] for row in r["curve"]]
    assert fas == sorted(fas, reverse=True) and fas[0] > 0    # white noise fools a low threshold
    at = r["at_stored_threshold"]
    assert at["threshold"] == r["stored_threshold"]
    assert sum(at["per_keyword"].values()) == at["false_accepts"]
    # per-keyword thresholds stored with the model count at the stored point: here "yes"
    # never fires, every other keyword fires as at the lowest threshold of the curve
    import shutil

    from kws.detect.detector import DetectorSettings, save_settings
    copy = tmp_path / "model"
    shutil.copytree("models/default", copy)
    low = r["curve"][0]["threshold"]
    others = {w: low for w in at["per_keyword"] if w != "yes"}
    save_settings(copy, DetectorSettings(threshold=low, thresholds=dict(others, yes=1.0)))
    again = negatives_curve(load_model(copy), [tmp_path / "neg"], gap_s=0.5, side="all")
    assert again["stored_thresholds"]["yes"] == 1.0
    at = again["at_stored_threshold"]
    assert r["curve"][0]["per_keyword"]["yes"] > 0 and at["per_keyword"]["yes"] == 0
    assert at["thresholds"]["yes"] == 1.0 and sum(at["per_keyword"].values()) == at["false_accepts"]
    (tmp_path / "empty").mkdir()
    with pytest.raises(KwsError, match="no WAV or FLAC"):
        negative_files([tmp_path / "empty"])
    with pytest.raises(KwsError, match="no folder at"):
        negative_files([tmp_path / "missing"])


def test_listening_settings_are_ranked_misses_first_within_the_goal_then_cost():
    from kws.checks.streameval import FA_TARGET, _rank

    pts = [dict(instances=3, smooth=2, miss_rate=0.2, fa_per_hour=FA_TARGET),
           dict(instances=2, smooth=1, miss_rate=0.2, fa_per_hour=0.5),
           dict(instances=2, smooth=2, miss_rate=0.1, fa_per_hour=FA_TARGET + 1),
           dict(instances=7, smooth=1, miss_rate=0.3, fa_per_hour=0.0)]
    best = sorted(pts, key=_rank)
    assert [(p["instances"], p["smooth"]) for p in best] == [(2, 1), (3, 2), (7, 1), (2, 2)]
    over = [dict(p, fa_per_hour=p["fa_per_hour"] + 10) for p in pts]   # none within the goal
    assert min(over, key=_rank)["instances"] == 7                        # fewest false accepts
