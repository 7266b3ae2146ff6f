"""The end of `make demo` (`kws summary`): the report after verify, and the story on one screen."""

import json
import shutil

from kws.checks.evaluate import evaluate
from kws.checks.verify import verify


def test_summary_tells_what_was_trained_on_what_and_how_it_ran(tmp_path, sc_mini):
    """A demo folder made of the shipped model, a tiny 'synthetic' corpus marker, a real eval
    and a real verify on the simulated board: the report gets the device's figures and the
    last screen names the data, the epochs, the accuracy in context, bit-exactness, cycles,
    flash and RAM, and where the report is."""
    from kws.cli import main
    from kws.targets.build import firmware_size

    demo = tmp_path / "demo"
    shutil.copytree("models/default", demo / "model")
    doc = json.loads((demo / "model" / "model.json").read_text())
    (sc_mini / "corpus.json").write_text(json.dumps(
        {"complete": True, "summary": {"clips": 36, "speakers": 5}}))
    run = demo / "run"
    run.mkdir()
    (run / "config.yaml").write_text("train:\n  epochs_dense: 12\n  epochs_quant: 3\n")
    (run / "metrics.csv").write_text("epoch,loss,seconds\n1,2.0,30\n2,1.5,30\n")
    doc["training"].update(data=str(sc_mini), epochs=15, run_dir=str(run))
    (demo / "model" / "model.json").write_text(json.dumps(doc))   # only read by kws.checks.demo
    (demo / "eval.json").write_text(json.dumps(evaluate("models/default", sc_mini, "all")))
    r = verify("models/default", sc_mini, board="sim", split="all", max_clips=3)
    (demo / "verify.json").write_text(json.dumps(r))

    assert main(["summary", str(demo)]) == 0
    report = (demo / "report" / "report.md").read_text()
    assert "not measured" not in report and "0 mismatched" in report
    size = firmware_size("models/default")
    assert f"flash {size['flash']:,} / " in report      # the one figure, the uno build's

    from kws.checks.demo import summary
    screen = summary(demo)
    assert "synthetic espeak-ng voices only (36 clips, 5 voices" in screen
    assert "15 epochs (12 dense, 3 quantisation-aware), 1.0 min" in screen
    assert f"{r['frames']:,} frames of 3 clips" in screen and "0 mismatches" in screen
    assert "docs/report/report.md" in screen and "on held-out speakers" in screen
    assert f"{r['cycles_per_frame']['median']:,.0f} cycles per frame" in screen
    assert f"flash {size['flash']:,} / 32,256 bytes, static RAM {size['ram']:,}" in screen
    assert str(demo / "report" / "report.md") in screen
