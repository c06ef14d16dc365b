"""A small progress bar for training loops, written to stderr; no tqdm needed.

    bar = Progress(total=120, desc="epoch 3/10", unit="seq")
    bar.update(32, loss=0.41, steps=32 * 50)     # n items done; keyword values shown after the bar
    bar.close(loss=0.39)                         # final line, with the throughput

On a terminal the bar redraws itself in place (at most ~10 times a second); when stderr is not a
terminal (a log file, CI, a pipe) only the final line of each bar is written, so logs stay short.
"""
import sys
import time

__all__ = ["Progress", "format_rate"]


def format_rate(x):
    """1234567 -> '1.23M'; 0.5 -> '0.50'."""
    for div, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(x) >= div:
            return f"{x / div:.2f}{suffix}"
    return f"{x:.2f}" if abs(x) < 10 else f"{x:.0f}"


def _format_value(v):
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


class Progress:
    """A one-line progress bar: description, bar, percentage, counters, items/s and time steps/s,
    and any `key=value` given to update (e.g. the running loss)."""

    def __init__(self, total, desc="", unit="seq", file=None, width=24, enabled=True, min_interval=0.1):
        self.total = max(int(total), 0)
        self.desc = desc
        self.unit = unit
        self.file = sys.stderr if file is None else file
        self.width = width
        self.enabled = enabled
        self.min_interval = min_interval
        self.n = 0
        self.steps = 0
        self.values = {}
        self.start = time.perf_counter()
        self._last_draw = 0.0
        self._closed = False
        try:
            self._tty = bool(self.file.isatty())
        except Exception:
            self._tty = False

    @property
    def elapsed(self):
        return time.perf_counter() - self.start

    def update(self, n=1, steps=0, **values):
        """`n` more items done (and `steps` more time steps); `values` replace the shown values."""
        self.n += n
        self.steps += steps
        self.values.update(values)
        if self.enabled and self._tty:
            now = time.perf_counter()
            if now - self._last_draw >= self.min_interval or self.n >= self.total:
                self._last_draw = now
                self._write("\r" + self._line() + "\x1b[K")

    def close(self, **values):
        """Draw the final state of the bar and end its line."""
        if self._closed:
            return
        self._closed = True
        self.values.update(values)
        if self.enabled:
            self._write(("\r" if self._tty else "") + self._line() + ("\x1b[K" if self._tty else "") + "\n")

    def _line(self):
        elapsed = max(self.elapsed, 1e-9)
        frac = self.n / self.total if self.total else 1.0
        frac = min(max(frac, 0.0), 1.0)
        filled = int(round(frac * self.width))
        bar = "#" * filled + "." * (self.width - filled)
        parts = [f"{self.desc} [{bar}] {100 * frac:3.0f}% {self.n}/{self.total} {self.unit}"]
        parts.append(f"{elapsed:.1f}s")
        parts.append(f"{format_rate(self.n / elapsed)} {self.unit}/s")
        if self.steps:
            parts.append(f"{format_rate(self.steps / elapsed)} steps/s")
        parts.extend(f"{k} {_format_value(v)}" for k, v in self.values.items())
        return " ".join(parts[:1]) + " | " + " | ".join(parts[1:])

    def _write(self, s):
        try:
            self.file.write(s)
            self.file.flush()
        except Exception:  # a closed or broken stream must never stop training
            self.enabled = False
