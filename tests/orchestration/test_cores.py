"""Sharing free cores among a study's running trials, and counting how busy the cores were."""

import json
from types import SimpleNamespace

import pytest

from orchestration.cores import CoreLedger, CoreMeter, CoreShare, core_use, utilisation_line
from tests.orchestration.conftest import mlflow_runs, run_study


def test_no_share_while_a_trial_waits_to_start():
    led = CoreLedger()
    led.join("a", "n1", 1, 4)
    led.update(waiting=True, running=["a"])
    assert led.extra("a") == 0
    led.update(waiting=False, running=["a"])
    assert led.extra("a") == 3


def test_free_cpus_of_a_node_are_split_evenly_and_never_beyond_the_node():
    led = CoreLedger()
    for t in ("a", "b", "c"):
        led.join(t, "n1", 1, 8)
    led.join("d", "n2", 2, 2)
    led.update(waiting=False, running=["a", "b", "c", "d"])
    shares = {t: led.extra(t) for t in "abcd"}
    assert shares == {"a": 2, "b": 2, "c": 1, "d": 0}
    assert sum(shares[t] + 1 for t in "abc") == 8  # every CPU of n1, none twice


def test_a_trial_that_ends_frees_its_cpus_for_the_others():
    led = CoreLedger()
    led.join("a", "n1", 1, 2)
    led.join("b", "n1", 1, 2)
    led.update(waiting=False, running=["a", "b"])
    assert (led.extra("a"), led.extra("b")) == (0, 0)
    led.update(waiting=False, running=["b"])  # a ended (Tune says so, whether or not a said goodbye)
    assert led.extra("b") == 1 and led.extra("a") == 0


def test_the_cap_limits_a_trial_threads():
    led = CoreLedger(cap=3)
    led.join("a", "n1", 2, 16)
    led.update(waiting=False, running=["a"])
    assert led.extra("a") == 1


def test_a_trial_unknown_to_the_broker_or_to_tune_gets_nothing():
    led = CoreLedger()
    led.join("a", "n1", 1, 4)
    led.update(waiting=False, running=["b"])
    assert led.extra("a") == 0 and led.extra("b") == 0


def test_a_restored_trial_counts_from_zero_again():
    meter = CoreMeter()
    for cpu in (10.0, 25.0):
        meter.add("t1", cpu)
    meter.add("t2", 7.0)
    meter.add("t1", 4.0)  # restored: a new process
    meter.add("t1", 9.0)
    assert meter.busy == pytest.approx(25 + 9 + 7)


class _Result:
    def __init__(self, frame):
        self.metrics_dataframe = frame


def test_core_use_counts_only_this_loop_reports():
    results = [  # Tune's metrics frames, as columns
        _Result({"timestamp": [50, 100, 130], "cpu_seconds": [40.0, 60.0, 90.0]}),
        _Result({"timestamp": [120, 140], "cpu_seconds": [30.0, float("nan")]}),
        _Result({"timestamp": [120]}),  # a trial from before this change: no CPU seconds
        _Result(None),
    ]
    use = core_use(results, since=100, cpus=2, wall=60)
    assert use["core_seconds_busy"] == pytest.approx(90 + 30)
    assert use["core_utilisation"] == pytest.approx(120 / 120)
    assert "120 of 120 core-seconds (2 CPUs x 60 s)" in utilisation_line(120, 2, 60)


def test_a_trial_without_a_broker_keeps_its_own_threads(monkeypatch):
    import ray

    monkeypatch.setattr(ray, "get_actor", lambda name: (_ for _ in ()).throw(ValueError(name)))
    share = CoreShare("paradis-cores-none", "t1", 2)
    assert share.threads() == 2 and share.threads() == 2


@pytest.mark.slow
def test_the_last_trial_takes_the_core_the_finished_one_left(study_env, tmp_path):
    """Two trials on two cores: once the short one ends and none waits, the long one trains on both
    (its holder reserved the core in Ray's books first); the study says how busy its cores were."""
    variants = {"short": {"training.epochs": 1}, "long": {"training.epochs": 14}}
    args = ["studies/quickstart.yaml", "--smoke", "--set", "search.variants=null"]
    args += ["--set", f"search.variants={json.dumps(variants)}"]
    proc = run_study(args, study_env)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    assert "% busy over the tuning loop" in proc.stdout, proc.stdout[-2000:]
    client, parents, children = mlflow_runs(tmp_path / "home" / "mlflow.db", "paradis-quickstart")
    threads = {
        c.data.params["search.variant"]: [m.value for m in client.get_metric_history(c.info.run_id, "threads")]
        for c in children
    }
    assert threads["short"] == [1], (threads, proc.stdout[-4000:], proc.stderr[-4000:])
    assert threads["long"][0] == 1 and threads["long"][-1] == 2, threads
    use = parents[0].data.metrics
    assert 0.3 < use["core_utilisation"] <= 1.05, use
    assert use["core_seconds_busy"] <= use["core_seconds_available"] * 1.05


class _Ref:
    def __init__(self, value=None, ready=True):
        self.value, self.ready = value, ready


class _FakeRay:
    """Just enough of Ray for CoreShare: a broker granting ``grant[0]`` CPUs, holders placed when
    ``placed[0]`` says so, and the kills."""

    def __init__(self):
        self.grant, self.placed, self.killed, self.holders = [0], [False], [], []

    def install(self, monkeypatch):
        import ray

        fake = self
        broker = SimpleNamespace(
            join=SimpleNamespace(remote=lambda *a: _Ref()),
            extra=SimpleNamespace(remote=lambda trial: _Ref(fake.grant[0])),
        )
        monkeypatch.setattr(ray, "get_actor", lambda name: broker)
        monkeypatch.setattr(ray, "get_runtime_context", lambda: SimpleNamespace(get_node_id=lambda: "ab" * 28))
        monkeypatch.setattr(ray, "nodes", lambda: [{"NodeID": "ab" * 28, "Resources": {"CPU": 2.0}}])
        monkeypatch.setattr(ray, "get", lambda ref, timeout=None: ref.value)
        monkeypatch.setattr(ray, "wait", lambda refs, timeout=None: ([r for r in refs if r.ready], []))
        monkeypatch.setattr(ray, "kill", lambda actor: fake.killed.append(actor))

        def remote(**kw):
            def wrap(cls):
                def options(num_cpus, scheduling_strategy):
                    def make():
                        ref = _Ref(True, ready=False)
                        holder = SimpleNamespace(cpus=num_cpus, ref=ref, ready=SimpleNamespace(remote=lambda: ref))
                        fake.holders.append(holder)
                        return holder

                    return SimpleNamespace(remote=make)

                return SimpleNamespace(options=options)

            return wrap

        monkeypatch.setattr(ray, "remote", remote)

    def place(self):
        for h in self.holders:
            h.ref.ready = True


def test_a_trial_raises_its_threads_only_once_its_holder_is_placed_and_gives_them_back(monkeypatch):
    from orchestration import cores

    fake, now = _FakeRay(), [0.0]
    fake.install(monkeypatch)
    share = CoreShare("b", "t1", 1, clock=lambda: now[0])
    assert share.threads() == 1 and not fake.holders  # nothing granted
    fake.grant[0] = 1
    now[0] += cores.POLL_S
    assert share.threads() == 1 and fake.holders[0].cpus == 1  # asked; Ray has not placed it yet
    now[0] += 1
    assert share.threads() == 1
    fake.place()
    assert share.threads() == 2  # reserved in Ray's books: now the trial may use the core
    fake.grant[0] = 0  # a trial waits
    assert share.threads() == 2  # until the next poll
    now[0] += cores.POLL_S
    assert share.threads() == 1 and fake.killed == [fake.holders[0]]
    share.close()


def test_a_holder_never_placed_is_given_up_and_not_asked_again_for_a_while(monkeypatch):
    from orchestration import cores

    fake, now = _FakeRay(), [0.0]
    fake.install(monkeypatch)
    fake.grant[0] = 1
    share = CoreShare("b", "t1", 1, clock=lambda: now[0])
    assert share.threads() == 1 and len(fake.holders) == 1
    now[0] += cores.PLACE_S + 1  # another job holds the CPU
    assert share.threads() == 1 and fake.killed == [fake.holders[0]]
    now[0] += cores.BACKOFF_S - 1
    assert share.threads() == 1 and len(fake.holders) == 1  # backing off
    now[0] += 2
    share.threads()
    assert len(fake.holders) == 2
    fake.place()
    assert share.threads() == 2
    share.close()
    assert fake.killed[-1] is fake.holders[1]
