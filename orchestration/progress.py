"""The study's per-switch progress table on the driver's console, as a Tune callback that works with Ray's
default output (no ``RAY_AIR_NEW_OUTPUT=0``, no legacy ``CLIReporter``): a row per trial with its state,
epoch, loss and each evaluated switch's measure, printed at most every ``every_s`` seconds while results
come in, when a trial ends, and once at the end."""

from __future__ import annotations

import sys
import time
from typing import Any

from orchestration.trials import configuration_name, run_config_for
from paradis.engine.metrics import measure_key
from paradis.methods import make_planner
from paradis.switch import parse_switch
from paradis.tasks import get_task


class ProgressTable:
    """What the callback prints, Ray-free: ``trials`` are Tune's trials (``trial_id``, ``status``,
    ``config``, ``last_result``)."""

    def __init__(self, spec, every_s: float = 30.0, out=None, clock=time.monotonic):
        base = run_config_for(spec, {})
        switches = base.evaluation.switches or [str(s) for s in make_planner(base.training).trained_switches]
        self.measure = get_task(base.task).measure
        self.columns = [(measure_key(self.measure, parse_switch(s)), s) for s in switches]
        self.epochs = {}  # a trial's planned epochs, from its configuration
        self.spec, self.every_s, self.out, self.clock = spec, every_s, out, clock
        self.last = None

    def _planned(self, trial) -> int | str:
        if trial.trial_id not in self.epochs:
            try:
                self.epochs[trial.trial_id] = run_config_for(self.spec, trial.config).training.epochs
            except Exception:  # a configuration the checks refused never becomes a trial; be safe anyway
                self.epochs[trial.trial_id] = "?"
        return self.epochs[trial.trial_id]

    def _cell(self, value: Any) -> str:
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            return "-"
        return f"{value:.2f}" if self.measure == "psnr" else f"{100 * value:.2f}"

    def text(self, trials) -> str:
        head = ["trial", "state", "epoch", "loss", *(f"{self.measure} {s}" for _, s in self.columns)]
        rows = [head]
        for t in sorted(trials, key=lambda t: t.trial_id):
            r = t.last_result or {}
            loss = r.get("loss")
            name = f"{configuration_name(t.config)}" + (f" seed {t.config['repeat']}" if "repeat" in t.config else "")
            rows.append(
                [
                    f"{name} ({t.trial_id})",
                    str(t.status),
                    f"{r.get('epoch', 0)}/{self._planned(t)}",
                    f"{loss:.4f}" if isinstance(loss, (int, float)) else "-",
                    *(self._cell(r.get(key)) for key, _ in self.columns),
                ]
            )
        widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
        lines = [
            "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths))) for row in rows
        ]
        done = sum(str(t.status) in ("TERMINATED", "ERROR") for t in trials)
        return f"[paradis] {done} of {len(trials)} trial(s) ended\n" + "\n".join(lines) + "\n"

    def show(self, trials, force: bool = False) -> bool:
        """Print the table when due (or ``force``); whether it printed."""
        now = self.clock()
        if not force and self.last is not None and now - self.last < self.every_s:
            return False
        self.last = now
        print(self.text(trials), file=self.out or sys.stdout, flush=True)
        return True


def progress_callback(spec, every_s: float = 30.0):
    """The Tune callback around :class:`ProgressTable`."""
    from ray import tune

    class ProgressCallback(tune.Callback):
        def __init__(self):
            self.table = ProgressTable(spec, every_s)

        def on_trial_result(self, iteration, trials, trial, result, **info):
            self.table.show(trials)

        def on_trial_complete(self, iteration, trials, trial, **info):
            self.table.show(trials, force=True)

        def on_trial_error(self, iteration, trials, trial, **info):
            self.table.show(trials, force=True)

        def on_experiment_end(self, trials, **info):
            self.table.show(trials, force=True)

    return ProgressCallback()
