"""Streaming schedule: how a model trained on 1 s clips listens to an endless stream.

The model only ever saw sequences that start from h = 0 and last one clip. Carried across an
endless stream its state drifts into places training never visited (it fires on noise, and a
word leaves traces that colour the next one), so the stream is cut into windows it knows:

    K copies ("instances") of the hidden state run side by side, staggered by S = P / K frames.
    Window j covers frames [j S, j S + P): at frame j S, instance j mod K is reset (h = 0,
    pooled scores = 0); it steps on every frame of its window; the scores of its last `pool`
    frames are summed (as a clip is classified); at frame j S + P - 1 the window ends and its
    pooled sum is the output. One window ends every S frames.

P is the clip length in frames rounded up to a multiple of K, so each window holds a whole
clip's worth of audio. Cost: K model steps per frame. The board runs the same schedule
(firmware/kernel/kws_stream.c, generated constants from `Schedule.constants`); `run_windows` is
the batched reference, `WindowRunner` the frame-by-frame one, and they agree exactly.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from kws.errors import KwsError


@dataclass(frozen=True)
class Schedule:
    period: int      # P: frames per window
    instances: int   # K: windows in flight; one ends every P / K frames
    pool: int        # scores of a window's last `pool` frames are summed

    def __post_init__(self):
        if self.instances < 1 or self.period % self.instances:
            raise KwsError(f"window of {self.period} frames does not split into "
                           f"{self.instances} instances")
        if self.instances > 255 or self.period > 65535:
            raise KwsError(f"schedule too large for the firmware: {self.instances} instances "
                           f"(at most 255), {self.period} frames (at most 65535)")
        if not 1 <= self.pool <= self.period:
            raise KwsError(f"pool of {self.pool} frames does not fit a {self.period}-frame window")

    @property
    def stride(self) -> int:
        return self.period // self.instances

    @classmethod
    def for_model(cls, model, instances: int = 2) -> Schedule:
        """The schedule for a shipped model: windows one clip long (rounded up)."""
        cfg = model.features
        clip_frames = 1 + (cfg.clip_samples - cfg.win_length) // cfg.hop_length
        period = -(-clip_frames // instances) * instances
        return cls(period, instances, model.pool_frames)

    def n_windows(self, n_frames: int) -> int:
        return 0 if n_frames < self.period else 1 + (n_frames - self.period) // self.stride

    def end_frames(self, n_windows: int) -> np.ndarray:
        """Index of the last frame of each window."""
        return np.arange(n_windows) * self.stride + self.period - 1

    def check_pool_fits(self, int_model) -> None:
        """The firmware sums `pool` int32 scores in int32: prove it cannot overflow."""
        a = int_model.arrays
        shift = int_model.shifts()["bcls"]
        bias = 127 << -shift if shift <= 0 else (127 >> shift) + 1
        bound = int(np.abs(a["Wc"]).sum(axis=1).max(initial=0)) * 32768 + bias
        if bound * self.pool > 2 ** 31 - 1:
            raise KwsError(f"pooling {self.pool} frames could overflow int32 "
                           f"(bound {bound * self.pool})")

    def constants(self) -> dict[str, int]:
        """The values the firmware's kws_stream.c is compiled with (kws_config.h)."""
        return {"KWS_STREAM_PERIOD": self.period, "KWS_STREAM_INSTANCES": self.instances,
                "KWS_STREAM_STRIDE": self.stride, "KWS_STREAM_POOL": self.pool}


def run_windows(int_model, xq: np.ndarray, schedule: Schedule, batch: int = 4096) -> np.ndarray:
    """Pooled integer scores [windows, classes] of a quantised frame stream xq [T, n_in]."""
    n = schedule.n_windows(len(xq))
    out = np.empty((n, int_model.n_classes), np.int64)
    starts = np.arange(n) * schedule.stride
    for b in range(0, n, batch):
        idx = starts[b:b + batch, None] + np.arange(schedule.period)
        scores = int_model.run(xq[idx])
        out[b:b + batch] = scores[:, -schedule.pool:].sum(1)
    return out


class WindowRunner:
    """The schedule frame by frame, as the board runs it: `push` one int8 frame, get the
    pooled scores when a window ends (else None)."""

    def __init__(self, int_model, schedule: Schedule):
        self.im, self.s = int_model, schedule
        self.h = np.zeros((schedule.instances, int_model.hidden), np.int64)
        self.pooled = np.zeros((schedule.instances, int_model.n_classes), np.int64)
        self.frame = 0

    def push(self, x: np.ndarray) -> np.ndarray | None:
        s, t = self.s, self.frame
        if t % s.stride == 0:                     # a window starts: its instance restarts
            k = (t // s.stride) % s.instances
            self.h[k] = 0
            self.pooled[k] = 0
        result = None
        for k in range(s.instances):
            if t < k * s.stride:                  # not started yet
                continue
            pos = (t - k * s.stride) % s.period
            scores, states = self.im.run(np.asarray(x)[None, None], h0=self.h[k:k + 1],
                                         return_state=True)
            self.h[k] = states[0, -1]
            if pos >= s.period - s.pool:
                self.pooled[k] += scores[0, 0]
            if pos == s.period - 1:
                result = self.pooled[k].copy()
        self.frame += 1
        return result
