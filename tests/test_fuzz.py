"""The protocol fuzzer (firmware/fuzz/): the firmware's frame decoder, dispatcher, kernel and
stream schedule (LISTEN, firmware/kernel/kws_stream.c), built on the host with clang's libFuzzer,
AddressSanitizer and UndefinedBehaviorSanitizer (aborting on any report), driven byte by byte
as the board does, with the harness's own model of PROTOCOL.md checking every reply
(firmware/fuzz/fuzz_proto.c).

Here: the committed corpus as a regression suite (-runs=0), a bounded fuzzing run of
KWS_FUZZ_SECONDS (default 60) split over the three configurations (each with a LISTEN
schedule), the seed corpus in step with kws.link.protocol's encoder, and deliberately broken copies
of kws_proto.c, kws_stream.c and kws_detect.c (the detector behind LISTEN's decisions and
DETECT) that the harness must catch. `make fuzz FUZZ_SECONDS=...` runs longer. Everything built or written
goes to build/fuzz/ (and the pytest temporary folder).
"""

import fcntl
import os
import re
import shutil
import subprocess
import sys

import pytest

from kws.targets.avr.simboard import REPO

FUZZ = REPO / "firmware" / "fuzz"
CORPUS = FUZZ / "corpus"
BUILD = REPO / "build" / "fuzz"
CONFIGS = ("shipped", "frames4", "names35")
SECONDS = float(os.environ.get("KWS_FUZZ_SECONDS", "60"))
ENV = dict(os.environ, ASAN_OPTIONS="abort_on_error=1:detect_leaks=1:strict_string_checks=1",
           UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1")
# anything a sanitizer, libFuzzer or the harness says when something is wrong
REPORT = re.compile(r"ERROR: (AddressSanitizer|UndefinedBehaviorSanitizer|LeakSanitizer|"
                    r"libFuzzer)|runtime error:|INVARIANT|SUMMARY: |deadly signal|Test unit "
                    r"written|WARNING: .*Sanitizer")


def _why_no_fuzzer(tmp) -> str | None:
    cc = shutil.which("clang")
    if not cc:
        return "clang is not installed (Debian: clang libclang-rt-14-dev; `make setup`)"
    if not shutil.which("make"):
        return "make is not installed"
    probe = subprocess.run(
        [cc, "-fsanitize=fuzzer,address,undefined", "-x", "c", "-", "-o", str(tmp / "probe")],
        input="#include <stddef.h>\n#include <stdint.h>\n"
              "int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n){(void)d;(void)n;return 0;}\n",
        capture_output=True, text=True)
    if probe.returncode != 0:
        last = (probe.stderr.strip().splitlines() or ["?"])[-1]
        return f"clang cannot link libFuzzer + ASan + UBSan ({last}): install libclang-rt-14-dev"
    return None


def _make(*args):
    """make -C firmware/fuzz ..., one pytest at a time (build/fuzz is shared)."""
    BUILD.mkdir(parents=True, exist_ok=True)
    with open(BUILD / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        return subprocess.run(["make", "-s", "-C", str(FUZZ), f"PY={sys.executable}", *args],
                              capture_output=True, text=True)


@pytest.fixture(scope="module")
def fuzzers(tmp_path_factory):
    reason = _why_no_fuzzer(tmp_path_factory.mktemp("probe"))
    if reason:
        pytest.skip(reason)
    r = _make("build")
    assert r.returncode == 0, r.stdout + r.stderr
    return {c: BUILD / c / "kws_fuzz" for c in CONFIGS}


def _run(exe, *args, cwd, timeout):
    r = subprocess.run([str(exe), *map(str, args)], cwd=cwd, capture_output=True, text=True,
                       timeout=timeout, env=ENV)
    return r.returncode, r.stdout + r.stderr


def _clean(rc, out, what):
    bad = [line for line in out.splitlines() if REPORT.search(line)]
    assert rc == 0 and not bad, f"{what}: exit {rc}\n" + "\n".join(bad[:20]) + "\n" + out[-4000:]


def test_seed_corpus_is_kws_protocol_encoder_output():
    """The committed seeds are what firmware/fuzz/seeds.py writes from kws.link.protocol today."""
    r = subprocess.run([sys.executable, str(FUZZ / "seeds.py"), "--check", str(CORPUS)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert len(list(CORPUS.glob("seed-*.bin"))) >= 20


def test_every_configuration_fuzzes_listen():
    """Every fuzz configuration's kws_config.h defines a stream schedule (LISTEN compiled in)
    and a detector (DETECT); the shipped one is the schedule and detector `kws export` builds
    the sketch with (two instances of one clip), the others end windows every few frames."""
    import importlib.util

    from kws.codegen.export import listen_schedule
    from kws.quant.modelfile import load_model
    from kws.detect.windows import Schedule

    spec = importlib.util.spec_from_file_location("kws_fuzz_models", FUZZ / "models.py")
    models = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(models)
    scheds, headers = models.schedules(), models.configs()
    assert set(scheds) == set(headers) == set(CONFIGS)
    shipped = load_model(REPO / "models" / "default")
    assert scheds["shipped"] == listen_schedule(shipped) == Schedule.for_model(shipped, 2)
    from kws.codegen.export import listen_detector

    assert models.detectors()["shipped"][0].constants() == \
        listen_detector(shipped, scheds["shipped"])[0].constants()
    dets = models.detectors()
    for c in CONFIGS:
        for k, v in scheds[c].constants().items():
            assert f"#define {k} {v}\n" in headers[c], (c, k)
        for k, v in dets[c][0].constants().items():     # and the detector (DETECT)
            assert f"#define {k} {v}\n" in headers[c], (c, k)
        if c != "shipped":
            assert scheds[c].period <= 8 and scheds[c].pool <= scheds[c].period


@pytest.mark.parametrize("config", CONFIGS)
def test_corpus_regression(fuzzers, config, tmp_path):
    """Every committed input (seeds and crash reproducers) once, no mutation: exit 0, silent."""
    n_files = len(list(CORPUS.iterdir()))
    before = sorted(p.name for p in CORPUS.iterdir())
    rc, out = _run(fuzzers[config], "-runs=0", CORPUS, cwd=tmp_path, timeout=120)
    _clean(rc, out, f"{config}: corpus regression")
    assert f"files: {n_files} " in out and "Done" in out, out[-2000:]
    assert sorted(p.name for p in CORPUS.iterdir()) == before  # read only


def test_bounded_fuzz(fuzzers, tmp_path, record_property):
    """KWS_FUZZ_SECONDS of fuzzing in all (default 60), split over the configurations: no crash,
    no sanitizer report, no broken invariant. New inputs stay in the temporary folder;
    a crash's input is written to build/fuzz/<config>/crash-*."""
    if SECONDS <= 0:
        pytest.skip("KWS_FUZZ_SECONDS=0")
    secs = max(1, round(SECONDS / len(CONFIGS)))
    lines = []
    for config in CONFIGS:
        work = tmp_path / config
        (work / "corpus").mkdir(parents=True)
        rc, out = _run(fuzzers[config], "-jobs=1", "-max_len=4096", "-timeout=10",
                       "-print_final_stats=1", f"-max_total_time={secs}",
                       f"-artifact_prefix={BUILD / config}/", work / "corpus", CORPUS,
                       cwd=work, timeout=secs + 300)
        seed = re.search(r"INFO: Seed: (\d+)", out)
        _clean(rc, out, f"{config}: {secs} s of fuzzing (libFuzzer -seed={seed and seed[1]})")
        execs = int(re.search(r"stat::number_of_executed_units: (\d+)", out)[1])
        rate = int(re.search(r"stat::average_exec_per_sec:\s+(\d+)", out)[1])
        cov = re.findall(r"DONE\s+cov: (\d+)", out)
        assert execs > 0
        record_property(f"{config}_executions", execs)
        lines.append(f"{config}: {execs} executions in {secs} s ({rate}/s), "
                     f"cov {cov[-1] if cov else '?'}, 0 crashes, 0 sanitizer reports")
    print("\n" + "\n".join(lines))


# Deliberately broken firmware: each must be caught by the corpus alone (the `shipped`
# configuration: LISTEN's 50-frame schedule). name: (file, text, replacement, report).
PROTO, STREAM = "firmware/protocol/kws_proto.c", "firmware/kernel/kws_stream.c"
DETECT = "firmware/kernel/kws_detect.c"
MUTANTS = {
    "resend-steps-again": (PROTO, "if (p->have_last && type == p->last_type",
                           "if (0 && p->have_last && type == p->last_type", "INVARIANT"),
    "link-error-evicts-cache": (PROTO, "p->err_len = error_frame(p, p->err, seq, code, type);\n"
                                "    p->out = p->err;",
                                "p->err_len = error_frame(p, p->tx, seq, code, type);\n"
                                "    p->out = p->tx;", "INVARIANT"),
    "rx-off-by-one": (PROTO, "if (p->rx_len < KWS_PROTO_RX_MAX) {",
                      "if (p->rx_len <= KWS_PROTO_RX_MAX) {", "runtime error: index"),
    "reply-past-buffer": (PROTO, "    buf[KWS_PROTO_HEADER + plen + 1] = (uint8_t)crc;",
                          "    buf[KWS_PROTO_HEADER + plen + 1] = (uint8_t)crc;\n"
                          "    buf[KWS_PROTO_HEADER + plen + 2] = 0;",
                          "AddressSanitizer: heap-buffer-overflow"),
    # LISTEN: a resent LISTEN (only) steps the schedule again
    "listen-resend-steps-again": (PROTO, "if (p->have_last && type == p->last_type",
                                  "if (p->have_last && type != KWS_T_LISTEN && "
                                  "type == p->last_type", "INVARIANT"),
    # pos counted after the step (the next frame's place) instead of this frame's
    "listen-pos-off-by-one": (PROTO, "d[2] = (uint8_t)p->listen.pos;",
                              "d[2] = (uint8_t)(p->listen.pos + 1);", "INVARIANT"),
    # the RESET command restarts LISTEN's schedule too (its state is its own)
    "reset-restarts-listen": (PROTO, "            kws_reset(&p->model);\n            p->t = 0;\n",
                              "            kws_reset(&p->model);\n            p->t = 0;\n"
                              "            kws_stream_reset(&p->listen);\n", "INVARIANT"),
    # a bad LISTEN (ERROR 7) with the RESET bit still restarts the schedule
    "listen-bad-request-resets": (PROTO, "    if (plen != 1 + KWS_N_IN || (in[0] & ~KWS_F_RESET))",
                                  "    if (in[0] & KWS_F_RESET)\n"
                                  "        kws_stream_reset(&p->listen);\n"
                                  "    if (plen != 1 + KWS_N_IN || (in[0] & ~KWS_F_RESET))",
                                  "INVARIANT"),
    # flags bit 1 accepted (PROTOCOL.md: other bits must be 0, ERROR 7)
    "listen-accepts-bit1": (PROTO, "(in[0] & ~KWS_F_RESET)", "(in[0] & ~KWS_F_KNOWN)",
                            "INVARIANT"),
    # IDENTIFY does not announce LISTEN (capability bit 3)
    "identify-no-listen-cap": (PROTO, "    d[3] |= KWS_CAP_LISTEN;", "    d[3] |= 0;", "INVARIANT"),
    # the window pools one frame too few (kws_stream.c)
    "stream-pool-off-by-one": (STREAM, "if (p >= KWS_STREAM_PERIOD - KWS_STREAM_POOL)",
                               "if (p > KWS_STREAM_PERIOD - KWS_STREAM_POOL)", "INVARIANT"),
    # the detector: LISTEN RESET does not make it forget its history and refractory period
    "listen-reset-keeps-detector": (PROTO, "        kws_detect_reset(&p->detect);\n", "",
                                    "INVARIANT"),
    # DETECT takes new settings whatever its flag byte says
    "detect-accepts-any-flag": (PROTO, "in[0] != KWS_F_SET", "0", "INVARIANT"),
    # IDENTIFY does not announce DETECT (capability bit 4)
    "identify-no-detect-cap": (PROTO, "    d[3] |= KWS_CAP_DETECT;", "    d[3] |= 0;",
                               "INVARIANT"),
    # the softmax truncates instead of rounding its division
    "detect-posterior-truncates": (DETECT, "* KWS_DET_ONE + total / 2) / total)",
                                   "* KWS_DET_ONE) / total)", "INVARIANT"),
    # the refractory period one window too long
    "detect-refractory-off-by-one": (DETECT, "d->since < d->refractory)",
                                     "d->since <= d->refractory)", "INVARIANT"),
}


@pytest.mark.parametrize("name", MUTANTS)
def test_harness_catches_broken_firmware(fuzzers, name, tmp_path):
    """A resent INFER stepped again, a link error overwriting the cached reply, the receive
    buffer one byte too long, a reply written one byte past its buffer; LISTEN: a resent
    LISTEN stepped again, pos off by one, RESET restarting LISTEN's schedule, a bad LISTEN
    resetting it, a flag bit other than RESET accepted, IDENTIFY without the LISTEN bit, a
    window pooling one frame too few; the detector: LISTEN RESET keeping its history, DETECT
    taking any flag, IDENTIFY without the DETECT bit, a truncating softmax, a refractory
    period one window too long: the corpus run fails, with the expected report (the
    harness's invariants, UBSan bounds, ASan)."""
    rel, old, new, report = MUTANTS[name]
    src = (REPO / rel).read_text()
    if src.count(old) != 1:
        pytest.fail(f"{rel} no longer contains the text mutant {name!r} changes: "
                    f"update MUTANTS in tests/test_fuzz.py")
    folder = BUILD / "mutants" / name
    folder.mkdir(parents=True, exist_ok=True)
    mutated = folder / os.path.basename(rel)
    mutated.write_text(src.replace(old, new))
    var = {STREAM: "MUTANT_STREAM_SRC", DETECT: "MUTANT_DETECT_SRC"}.get(rel, "MUTANT_SRC")
    r = _make("mutant", f"{var}={mutated}", f"MUTANT_OUT={folder / 'kws_fuzz'}")
    assert r.returncode == 0, r.stdout + r.stderr
    rc, out = _run(folder / "kws_fuzz", "-runs=0", f"-artifact_prefix={tmp_path}/", CORPUS,
                   cwd=tmp_path, timeout=120)
    assert rc != 0 and report in out, out[-3000:]
