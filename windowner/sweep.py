"""``windowner sweep``: a hyperparameter search over a config, run by Optuna.

A sweep file names a base config, fixed overrides, a search space, the search ``method`` (grid,
random or TPE), the number of ``trials``, the ``metric`` (a per-epoch dev metric such as
``dev_f1``) and a ``pruner`` fed by that metric after every epoch. Every trial is an ordinary run
directory ``trial-NNNN`` under the sweep directory, claimed by windowner.runs; beside it,
``trial-NNNN.json`` is the sweep's record of the trial (number, parameters, overrides, outcome).

Who does what: one *driver* (``run_sweep``) asks the study for each trial, samples its
parameters, creates its run directory and launches it as a separate process (``python -m
windowner.sweep trial``, the job as JSON on stdin) — locally with ``subprocess`` or on a Dask
cluster. The trial process trains, reports each epoch's metric (and stops when pruned) and tells
the study the result. The study lives in an RDB storage with heartbeats: SQLite in the sweep
directory by default, or any URL given (``postgresql://…``). A trial whose process vanished (kill
-9, a lost machine) stops beating, is failed as stale and re-queued with the same parameters;
its re-run resumes the same run directory from ``last.npz``. Optuna and Dask are imported only
inside the functions that need them (the ``sweep`` extra).
"""

from __future__ import annotations

import contextlib
import ctypes
import datetime
import json
import os
import signal
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from windowner import config as cfg
from windowner import runs
from windowner.errors import ConfigError, DataError, UsageError, WindownerError, signal_behind

SWEEP_EXTRA = "pip install 'windowner[sweep]' (or make sweep)"
SWEEP_KEYS = (
    "base",
    "set",
    "space",
    "method",
    "trials",
    "metric",
    "direction",
    "pruner",
    "seed",
    "study",
    "heartbeat",
)
METHODS = ("grid", "random", "tpe")
PRUNERS = ("none", "median", "halving")
SPEC_KINDS = ("choices", "int", "float")
SPEC_OPTIONS = ("log", "step", "when")
FINISHED = ("COMPLETE", "PRUNED")  # the trial states that count towards ``trials``
ACTIVE = ("RUNNING", *FINISHED)
BEATING = "beating"  # user attribute: the trial's number, set after its first heartbeat
SWEEP_FILE = "sweep.json"


class SweepInterrupted(WindownerError):
    """Ctrl-C or SIGTERM stopped the driver; running trials were told to save and re-queue."""

    def __init__(self, signum: int) -> None:
        name = "Ctrl-C" if signum == signal.SIGINT else "SIGTERM"
        super().__init__(f"{name}: sweep stopped; run the same command again to continue it")
        self.exit_code = 128 + signum


# ----------------------------------------------------------------------------- the space


@dataclass(frozen=True)
class Param:
    """One searched config key. Exactly one of ``choices`` / a numeric range; ``name`` is the
    Optuna parameter name (``key``, or ``key[case]`` under a ``by`` table)."""

    key: str
    name: str
    choices: tuple[Any, ...] | None = None
    low: float = 0.0
    high: float = 0.0
    integer: bool = False
    log: bool = False
    step: float | None = None


@dataclass(frozen=True)
class Entry:
    """A space entry: a Param, or a ``by`` table (value of another key → Param or fixed value);
    ``when`` limits it to trials where other keys hold one of the listed values."""

    key: str
    param: Param | None = None
    by: str | None = None
    cases: tuple[tuple[Any, Any], ...] = ()
    when: tuple[tuple[str, tuple[Any, ...]], ...] = ()


@dataclass(frozen=True)
class Sweep:
    source: str
    base: cfg.Config  # resolved: environment references expanded, data paths absolute
    entries: tuple[Entry, ...]
    method: str = "tpe"
    trials: int = 20
    metric: str = "dev_f1"
    direction: str = "maximize"
    pruner: dict[str, Any] | None = None
    seed: int = 0
    study: str = "sweep"
    heartbeat: float = 5.0
    spec: dict[str, Any] | None = None  # the file's content, to recognise the same sweep again


def load_sweep(path: str | Path) -> Sweep:
    """Read and check a sweep file; raises ConfigError naming the file and the key."""
    path = Path(path)
    raw = cfg.read_yaml(path)
    src = str(path)
    unknown = [k for k in raw if k not in SWEEP_KEYS]
    if unknown:
        raise ConfigError(
            [f"{k}: unknown key; valid keys: {', '.join(SWEEP_KEYS)}" for k in unknown], src
        )
    base = _load_base(raw, path)
    entries = _parse_space(raw.get("space"), base, src)
    method = _choice(raw, "method", "tpe", METHODS, src)
    grid_size = len(grid_points(entries, base)) if method == "grid" else 0
    trials = raw.get("trials", grid_size or 20)
    if not isinstance(trials, int) or isinstance(trials, bool) or trials < 1:
        raise ConfigError(f"trials: expected a positive integer, got {trials!r}", src)
    metric = raw.get("metric", "dev_f1")
    if not isinstance(metric, str) or not metric.startswith("dev_"):
        raise ConfigError(
            f"metric: expected a per-epoch dev metric such as dev_f1, got {metric!r}", src
        )
    return Sweep(
        source=src,
        base=base,
        entries=entries,
        method=method,
        trials=trials,
        metric=metric,
        direction=_choice(raw, "direction", "maximize", ("maximize", "minimize"), src),
        pruner=_parse_pruner(raw.get("pruner", "median"), src),
        seed=_number(raw, "seed", 0, src, int),
        study=str(raw.get("study", path.stem)),
        heartbeat=_number(raw, "heartbeat", 5.0, src, float),
        spec=json.loads(json.dumps(raw, default=str)),
    )


def _choice(raw: dict[str, Any], key: str, default: str, allowed: tuple[str, ...], src: str) -> str:
    value = raw.get(key, default)
    if value not in allowed:
        raise ConfigError(f"{key}: unknown value {value!r}; choose from: {', '.join(allowed)}", src)
    return value


def _number(raw: dict[str, Any], key: str, default: Any, src: str, kind: type) -> Any:
    value = raw.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise ConfigError(f"{key}: expected a number >= 0, got {value!r}", src)
    return kind(value)


def _load_base(raw: dict[str, Any], path: Path) -> cfg.Config:
    """The base config (relative to the sweep file) with ``set`` applied, environment references
    expanded and data paths made absolute, so that trial processes anywhere find the same files."""
    base = raw.get("base")
    if not isinstance(base, str):
        raise ConfigError(
            "base: expected the path of a config file (relative to this file)", str(path)
        )
    fixed = raw.get("set") or {}
    if not isinstance(fixed, dict):
        raise ConfigError("set: expected a mapping of key.path: value", str(path))
    items = [f"{k}={json.dumps(v)}" for k, v in fixed.items()]
    config = cfg.resolved(cfg.load_config(path.parent / base, items))
    d = config.data
    absolute = {
        k: os.path.abspath(v) if v else v
        for k, v in (("train", d.train), ("dev", d.dev), ("test", d.test))
    }
    for split, file in absolute.items():
        if file and not os.path.exists(file):
            raise DataError(f"{path}: data.{split} {file}: no such file (base config {base})")
    return replace(config, data=replace(d, **absolute))


def _config_key(key: Any, src: str) -> str:
    """``key`` if it names a config value (not a section), else ConfigError."""
    try:
        value = cfg._get(cfg.Config(), str(key))
    except AttributeError:
        value = None
        ok = False
    else:
        ok = not hasattr(value, "__dataclass_fields__")
    if not ok:
        raise ConfigError(f"space.{key}: not a config key (e.g. optimizer.lr, model.hidden)", src)
    return str(key)


def _parse_space(space: Any, base: cfg.Config, src: str) -> tuple[Entry, ...]:
    if not isinstance(space, dict) or not space:
        raise ConfigError("space: expected a mapping of config key → search spec", src)
    entries: list[Entry] = []
    for key, spec in space.items():
        key = _config_key(key, src)
        where = f"space.{key}"
        if not isinstance(spec, dict):
            raise ConfigError(f"{where}: expected a mapping such as {{choices: [...]}}", src)
        when = _parse_when(spec.get("when"), [e.key for e in entries], where, src)
        if "by" in spec:
            entries.append(_parse_by(key, spec, when, [e.key for e in entries], src))
        else:
            entries.append(Entry(key, _parse_param(key, key, spec, where, src), when=when))
        _check_values(entries[-1], base, src)
    return tuple(entries)


def _parse_when(when: Any, earlier: list[str], where: str, src: str) -> tuple:
    if when is None:
        return ()
    if not isinstance(when, dict):
        raise ConfigError(f"{where}.when: expected a mapping of key → list of values", src)
    out = []
    for key, values in when.items():
        if key not in earlier:
            raise ConfigError(f"{where}.when: {key!r} must be a key listed earlier in space", src)
        values = values if isinstance(values, list) else [values]
        out.append((key, tuple(values)))
    return tuple(out)


def _parse_by(key: str, spec: dict, when: tuple, earlier: list[str], src: str) -> Entry:
    where = f"space.{key}"
    by, values = spec.get("by"), spec.get("values")
    extra = set(spec) - {"by", "values", "when"}
    if extra:
        raise ConfigError(
            f"{where}: unknown option(s) {', '.join(map(str, extra))} beside by/values", src
        )
    if by not in earlier:
        raise ConfigError(f"{where}.by: {by!r} must be a key listed earlier in space", src)
    if not isinstance(values, dict) or not values:
        raise ConfigError(f"{where}.values: expected a mapping of {by} value → value or spec", src)
    cases = []
    for case, value in values.items():
        if isinstance(value, dict):
            value = _parse_param(key, f"{key}[{case}]", value, f"{where}.values.{case}", src)
        cases.append((case, value))
    return Entry(key, by=by, cases=tuple(cases), when=when)


def _parse_param(key: str, name: str, spec: dict, where: str, src: str) -> Param:
    kinds = [k for k in SPEC_KINDS if k in spec]
    extra = set(spec) - set(SPEC_KINDS) - set(SPEC_OPTIONS)
    if len(kinds) != 1 or extra:
        raise ConfigError(
            f"{where}: expected exactly one of {', '.join(SPEC_KINDS)} "
            "(with optional log, step, when)",
            src,
        )
    kind, log, step = kinds[0], bool(spec.get("log", False)), spec.get("step")
    if kind == "choices":
        choices = spec["choices"]
        if not isinstance(choices, list) or not choices:
            raise ConfigError(f"{where}.choices: expected a non-empty list", src)
        return Param(key, name, choices=tuple(choices))
    bounds = spec[kind]
    number = int if kind == "int" else (int, float)
    ok = (
        isinstance(bounds, list)
        and len(bounds) == 2
        and all(isinstance(b, number) and not isinstance(b, bool) for b in bounds)
    )
    if not ok or bounds[0] >= bounds[1] or (log and bounds[0] <= 0):
        raise ConfigError(
            f"{where}.{kind}: expected [low, high] with low < high (low > 0 for log)", src
        )
    return Param(key, name, None, bounds[0], bounds[1], kind == "int", log, step)


def _check_values(entry: Entry, base: cfg.Config, src: str) -> None:
    """Each listed value must make a valid config on its own (e.g. a known optimizer name)."""
    params = [entry.param] if entry.param else [c for _, c in entry.cases]
    for p in params:
        values = (p.choices or ()) if isinstance(p, Param) else (p,)
        if isinstance(p, Param) and p.choices is None:
            values = (p.low, p.high)
        for value in values:
            raw = base.to_dict()
            cfg.apply_override(raw, f"{entry.key}={json.dumps(value)}", [])
            try:
                cfg.from_dict(raw)
            except ConfigError as exc:
                raise ConfigError(f"space.{entry.key}: {exc.problems[0]}", src) from None


# ----------------------------------------------------------------------------- sampling


_SKIP = object()


def resolve_entry(entry: Entry, chosen: dict[str, Any], base: cfg.Config) -> Any:
    """What ``entry`` means for a trial given the values chosen so far: a Param to search, a
    fixed value, or ``_SKIP`` (its ``when`` does not hold, or its ``by`` table has no case)."""

    def current(key: str) -> Any:
        return chosen[key] if key in chosen else cfg._get(base, key)

    if any(current(k) not in values for k, values in entry.when):
        return _SKIP
    if entry.param is not None:
        return entry.param
    return dict(entry.cases).get(current(entry.by), _SKIP)


def suggest(trial: Any, p: Param) -> Any:
    """One value of ``p`` from an Optuna trial."""
    if p.choices is not None:
        return trial.suggest_categorical(p.name, list(p.choices))
    if p.integer:
        return trial.suggest_int(p.name, int(p.low), int(p.high), step=int(p.step or 1), log=p.log)
    return trial.suggest_float(p.name, p.low, p.high, step=p.step, log=p.log)


def sample_overrides(trial: Any, sweep: Sweep) -> dict[str, Any]:
    """The config overrides of one trial (key path → value), sampled in file order."""
    chosen: dict[str, Any] = {}
    for entry in sweep.entries:
        target = resolve_entry(entry, chosen, sweep.base)
        if target is not _SKIP:
            chosen[entry.key] = suggest(trial, target) if isinstance(target, Param) else target
    return chosen


def grid_values(p: Param) -> list[Any]:
    """Every value of ``p`` on a grid: its choices, or its range walked by ``step``."""
    if p.choices is not None:
        return list(p.choices)
    if p.integer:
        return list(range(int(p.low), int(p.high) + 1, int(p.step or 1)))
    if p.step is None or p.log:
        raise ConfigError(f"space.{p.key}: a grid needs choices or a float range with a step")
    n = int((p.high - p.low) / p.step + 1e-9)
    return [round(p.low + i * p.step, 12) for i in range(n + 1)]


def grid_points(entries: tuple[Entry, ...], base: cfg.Config) -> list[dict[str, Any]]:
    """Every combination of the searched values (conditional keys only where they apply), as
    Optuna parameter dicts; no two points describe the same config."""
    points: list[tuple[dict[str, Any], dict[str, Any]]] = [({}, {})]
    for entry in entries:
        grown = []
        for params, chosen in points:
            target = resolve_entry(entry, chosen, base)
            if target is _SKIP:
                grown.append((params, chosen))
            elif not isinstance(target, Param):
                grown.append((params, {**chosen, entry.key: target}))
            else:
                for v in grid_values(target):
                    grown.append(({**params, target.name: v}, {**chosen, entry.key: v}))
        points = grown
    return [params for params, _ in points]


# ----------------------------------------------------------------------------- the study


def quiet_optuna() -> Any:
    """Import optuna (the sweep extra) with its info logging and experimental warnings off."""
    try:
        import optuna
    except ImportError:
        raise UsageError(f"sweeps need Optuna: {SWEEP_EXTRA}") from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    # ask/tell with heartbeats is what we do on purpose: the driver and the trial beat
    warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used")
    return optuna


def retry_callback() -> Any:
    """Optuna's callback that re-queues a failed trial with its parameters, user attributes
    (the run directory) and reported values (renamed in Optuna 4.9)."""
    from optuna import storages

    cls = getattr(storages, "RetryHeartbeatStaleTrialCallback", None)
    cls = cls or storages.RetryFailedTrialCallback
    return cls(inherit_intermediate_values=True)


def make_storage(url: str, heartbeat: float) -> Any:
    """An RDB storage with heartbeats; stale trials are re-queued with their parameters,
    user attributes (the run directory) and the metric values already reported."""
    optuna = quiet_optuna()
    kwargs: dict[str, Any] = {}
    if url.startswith("sqlite"):
        kwargs["engine_kwargs"] = {"connect_args": {"timeout": 120}}
    interval = max(1, round(heartbeat))
    import sqlalchemy.exc

    # drivers starting together race to create the schema: SQLite says IntegrityError or
    # OperationalError, PostgreSQL ProgrammingError ("relation … already exists")
    races = (
        sqlalchemy.exc.IntegrityError,
        sqlalchemy.exc.OperationalError,
        sqlalchemy.exc.ProgrammingError,
    )
    for attempt in range(5):
        try:
            return optuna.storages.RDBStorage(
                with_driver(url),
                heartbeat_interval=interval,
                grace_period=4 * interval,
                heartbeat_stale_trial_callback=retry_callback(),
                **kwargs,
            )
        except races as exc:
            if attempt == 4:
                reason = str(getattr(exc, "orig", None) or exc).splitlines()[0]
                raise UsageError(f"study storage {_masked(url)}: cannot open ({reason})") from None
            time.sleep(0.2 * (attempt + 1))
        except ImportError as exc:
            raise UsageError(
                f"study storage {_masked(url)}: no database driver for it ({exc}); "
                f"PostgreSQL's comes with the sweep extra: {SWEEP_EXTRA}"
            ) from None
        except sqlalchemy.exc.ArgumentError as exc:
            raise UsageError(f"study storage {_masked(url)}: {exc}") from None
    raise AssertionError("unreachable")


def with_driver(url: str) -> str:
    """A bare ``postgresql://`` URL made to name the driver the sweep extra installs (psycopg 3;
    SQLAlchemy's default for the bare scheme is psycopg2 before 2.1); any other URL unchanged."""
    scheme, sep, rest = url.partition("://")
    return f"postgresql+psycopg://{rest}" if sep and scheme == "postgresql" else url


def make_pruner(spec: dict[str, Any] | None) -> Any:
    """The Optuna pruner a sweep file's ``pruner`` describes (none → NopPruner)."""
    optuna = quiet_optuna()
    spec = spec or {"name": "none"}
    if spec["name"] == "median":
        return optuna.pruners.MedianPruner(
            n_startup_trials=spec.get("startup_trials", 5),
            n_warmup_steps=spec.get("warmup_epochs", 2),
        )
    if spec["name"] == "halving":
        return optuna.pruners.SuccessiveHalvingPruner(
            min_resource=spec.get("min_epochs", 1), reduction_factor=spec.get("reduction_factor", 3)
        )
    return optuna.pruners.NopPruner()


def _parse_pruner(value: Any, src: str) -> dict[str, Any]:
    spec = {"name": value} if isinstance(value, str) else value
    if not isinstance(spec, dict) or spec.get("name") not in PRUNERS:
        raise ConfigError(
            f"pruner: expected one of {', '.join(PRUNERS)} (or a mapping with name:)", src
        )
    return spec


def make_sampler(sweep: Sweep, offset: int) -> Any:
    """TPE (constant liar, for trials that run at the same time) or random; a grid is enqueued
    up front and sampled by the random sampler only if trials outnumber its points."""
    optuna = quiet_optuna()
    seed = sweep.seed + offset  # a restarted driver must not replay the first draws
    if sweep.method == "tpe":
        return optuna.samplers.TPESampler(seed=seed, constant_liar=True)
    return optuna.samplers.RandomSampler(seed=seed)


def open_study(sweep: Sweep, storage: Any) -> Any:
    """The sweep's study, created (and for a grid filled with its points) on first use."""
    optuna = quiet_optuna()
    study = optuna.create_study(
        study_name=sweep.study,
        storage=storage,
        direction=sweep.direction,
        pruner=make_pruner(sweep.pruner),
        load_if_exists=True,
    )
    n = len(study.get_trials(deepcopy=False))
    study.sampler = make_sampler(sweep, n)
    if n == 0 and sweep.method == "grid":
        for point in grid_points(sweep.entries, sweep.base):
            study.enqueue_trial(point)
    return study


def state_counts(study: Any) -> dict[str, int]:
    """How many trials the study holds in each state (by state name)."""
    counts: dict[str, int] = {}
    for t in study.get_trials(deepcopy=False):
        counts[t.state.name] = counts.get(t.state.name, 0) + 1
    return counts


def fail_unbeaten(study: Any, grace: float) -> int:
    """Fail and re-queue RUNNING trials that never got a heartbeat: a driver killed between
    ``study.ask()`` and the trial's first beat leaves one, and Optuna never counts a trial
    without a heartbeat as stale, so the study would wait for it forever. Retries inherit the
    user attributes, so the mark is the trial's own number. Returns how many were re-queued."""
    now = datetime.datetime.now()
    requeued = 0
    for t in study.get_trials(deepcopy=False, states=_states(("RUNNING",))):
        started = t.datetime_start or now
        if t.user_attrs.get(BEATING) != t.number and (now - started).total_seconds() > grace:
            requeued += fail_and_requeue(study, t._trial_id)
    return requeued


def fail_and_requeue(study: Any, trial_id: int) -> bool:
    """Fail a RUNNING trial whose process is gone and queue a retry; False if it had finished."""
    optuna = quiet_optuna()
    storage = study._storage
    try:
        if not storage.set_trial_state_values(trial_id, optuna.trial.TrialState.FAIL):
            return False
    except optuna.exceptions.UpdateFinishedTrialError:
        return False
    retry_callback()(study, storage.get_trial(trial_id))
    return True


# ----------------------------------------------------------------------------- the driver


@dataclass
class Launched:
    trial_id: int
    number: int
    run_dir: Path
    handle: Any


def prepare_dir(sweep: Sweep, out: Path) -> Path:
    """The sweep directory, with ``sweep.json`` (the file's content and the resolved base);
    refuses a directory that holds a different sweep."""
    out.mkdir(parents=True, exist_ok=True)
    record = {"source": sweep.source, "spec": sweep.spec, "base": sweep.base.to_dict()}
    path = out / SWEEP_FILE
    if path.exists():
        old = json.loads(path.read_text(encoding="utf-8"))
        if _without_trials(old.get("spec")) != _without_trials(record["spec"]):
            raise UsageError(
                f"{out} holds a different sweep ({old.get('source')}); give another --out"
            )
    from windowner.checkpoint import atomic_write_text

    atomic_write_text(path, json.dumps(record, indent=2) + "\n")
    return out


def _without_trials(spec: Any) -> Any:
    """A sweep's identity: everything but ``trials``, which may be raised to extend it."""
    return {k: v for k, v in spec.items() if k != "trials"} if isinstance(spec, dict) else spec


def default_storage(sweep_dir: Path) -> str:
    return f"sqlite:///{sweep_dir.resolve() / 'study.db'}"


def admit(study: Any, sweep: Sweep, sweep_dir: Path) -> tuple[Any, Path, dict] | None:
    """Ask for the next trial (a queued retry or grid point first), check it is not one too
    many (two drivers may ask at once), sample its overrides and create its run directory."""
    optuna = quiet_optuna()
    trial = study.ask()
    study._storage.record_heartbeat(trial._trial_id)
    trial.set_user_attr(BEATING, trial.number)  # after its first beat: see fail_unbeaten
    earlier = [
        t
        for t in study.get_trials(deepcopy=False, states=_states(ACTIVE))
        if t.number < trial.number
    ]
    if len(earlier) >= sweep.trials:
        trial.set_user_attr("surplus", True)
        study.tell(trial, state=optuna.trial.TrialState.FAIL)
        return None
    overrides = sample_overrides(trial, sweep)
    name = trial.user_attrs.get("run_dir")  # a retry resumes its failed trial's directory
    if name is None:
        name = f"trial-{trial.number:04d}"
        trial.set_user_attr("run_dir", name)  # first: a kill never leaves a directory unowned
        try:  # a new trial number has no directory yet
            runs.claim_run_dir(sweep_dir / name, exact=True, exclusive=True)
        except runs.RunDirTaken:
            raise UsageError(
                f"{sweep_dir / name} exists but is not this study's trial (was study.db "
                "removed?); give another --out"
            ) from None
    # A retry whose first attempt died before training claimed nothing: train() claims it.
    record = {"number": trial.number, "params": trial.params, "overrides": overrides}
    from windowner.checkpoint import atomic_write_text

    atomic_write_text(trial_record(sweep_dir / name), json.dumps(record, indent=2) + "\n")
    return trial, sweep_dir / name, overrides


def trial_record(run_dir: Path) -> Path:
    """The sweep's record of a trial, beside its run directory: ``trial-0003.json``."""
    return run_dir.with_name(f"{run_dir.name}.json")


def _states(names: tuple[str, ...]) -> tuple[Any, ...]:
    optuna = quiet_optuna()
    return tuple(optuna.trial.TrialState[n] for n in names)


def trial_job(sweep: Sweep, storage_url: str, trial: Any, run_dir: Path, overrides: dict) -> dict:
    """Everything a trial process needs, as JSON: it reads no sweep file."""
    return {
        "storage": storage_url,
        "study": sweep.study,
        "trial_id": trial._trial_id,
        "number": trial.number,
        "run_dir": str(run_dir.resolve()),
        "config": sweep.base.to_dict(),
        "overrides": overrides,
        "metric": sweep.metric,
        "pruner": sweep.pruner,
        "heartbeat": sweep.heartbeat,
    }


def run_sweep(
    path: str | Path,
    out: str | Path | None = None,
    workers: int | None = None,
    storage: str | None = None,
    dask: str | None = None,
    log: Callable[[str], None] = lambda message: None,
) -> dict[str, Any]:
    """Run (or continue) a sweep until it has ``trials`` finished trials; returns its summary."""
    if workers is not None and workers < 1:
        raise UsageError("--workers must be >= 1")
    quiet_optuna()  # without the extra: say so before any directory is made
    sweep = load_sweep(path)
    sweep_dir = prepare_dir(sweep, Path(out) if out else Path("runs/sweeps") / Path(path).stem)
    url = storage or default_storage(sweep_dir)
    study = open_study(sweep, make_storage(url, sweep.heartbeat))
    launcher = DaskLauncher(dask) if dask else LocalLauncher(workers or 1)
    slots = launcher.slots(workers)
    log(
        f"sweep {sweep_dir}: {sweep.method}, {sweep.trials} trials, "
        f"{slots} at a time, {launcher.where}"
    )
    with _signals_raise() as stopped:
        try:
            _drive(study, sweep, sweep_dir, url, launcher, slots, log)
        except SweepInterrupted as exc:
            stopped.append(exc)
        finally:
            launcher.close()
    if stopped:
        raise stopped[0]
    return sweep_summary(study, sweep, sweep_dir, url)


def _drive(
    study: Any,
    sweep: Sweep,
    sweep_dir: Path,
    url: str,
    launcher: LocalLauncher | DaskLauncher,
    slots: int,
    log: Callable[[str], None],
) -> None:
    """The driver loop: re-queue stale trials, reap finished processes, launch new trials."""
    optuna = quiet_optuna()
    running: list[Launched] = []
    beat = 0.0
    try:
        while True:
            optuna.storages.fail_stale_trials(study)
            running = [r for r in running if not _reaped(study, r, launcher, log)]
            if time.monotonic() - beat > sweep.heartbeat:
                beat = time.monotonic()
                if fail_unbeaten(study, 4 * max(1, round(sweep.heartbeat))):
                    log("a trial left without a heartbeat by a killed driver: queued again")
                for r in running:
                    study._storage.record_heartbeat(r.trial_id)
            counts = state_counts(study)
            if sum(counts.get(s, 0) for s in FINISHED) >= sweep.trials:
                if not running:
                    return
                time.sleep(0.1)  # the last trials have told the study and are exiting
                continue
            active = sum(counts.get(s, 0) for s in ACTIVE)
            while len(running) < slots and active < sweep.trials:
                admitted = admit(study, sweep, sweep_dir)
                active += 1
                if admitted is None:
                    break
                trial, run_dir, overrides = admitted
                job = trial_job(sweep, url, trial, run_dir, overrides)
                handle = launcher.start(job)
                running.append(Launched(trial._trial_id, trial.number, run_dir, handle))
                log(f"trial {trial.number} started in {run_dir.name}: {_brief(overrides)}")
            _wait_for_an_exit(launcher, running, POLL_SECONDS)
    finally:
        _stop_all(study, launcher, running)


POLL_SECONDS = 0.25  # the driver's round of study queries, when no trial process ends sooner


def _wait_for_an_exit(launcher: Any, running: list[Launched], timeout: float) -> None:
    """Sleep up to ``timeout`` seconds, but return as soon as a running trial's process has
    ended (cheap process polls, no study queries), so its slot is refilled at once."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(launcher.done(r.handle) for r in running):
            return
        time.sleep(0.02)


def _stop_all(study: Any, launcher: Any, running: list[Launched]) -> None:
    """Stop the trials still running (a local trial saves last.npz and re-queues itself); a
    trial whose process is gone without doing so is re-queued here. A trial already running
    on a Dask worker cannot be stopped: it finishes and tells the study by itself."""
    if not running:
        return
    launcher.stop([r.handle for r in running])
    for r in running:
        if launcher.done(r.handle):
            fail_and_requeue(study, r.trial_id)


def _reaped(study: Any, r: Launched, launcher: Any, log: Callable[[str], None]) -> bool:
    if not launcher.done(r.handle):
        return False
    trial = study._storage.get_trial(r.trial_id)
    if trial.state.name == "RUNNING":
        fail_and_requeue(study, r.trial_id)
        log(f"trial {r.number}: its process ended without a result; queued again")
    elif trial.state.name in FINISHED:
        value = "-" if trial.value is None else f"{trial.value:.2f}"
        log(
            f"trial {r.number} {trial.state.name.lower()}: {value} "
            f"({len(trial.intermediate_values)} epochs)"
        )
    else:
        log(f"trial {r.number} {trial.state.name.lower()}: {trial.user_attrs.get('error', '')}")
    return True


def _brief(overrides: dict[str, Any]) -> str:
    return " ".join(
        f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in overrides.items()
    )


@contextlib.contextmanager
def _signals_raise() -> Iterator[list[SweepInterrupted]]:
    """SIGTERM and SIGINT raise SweepInterrupted in the driver (trials get the signal too)."""
    from windowner.entry import signals_to

    def handler(signum: int, frame: Any) -> None:
        raise SweepInterrupted(signum)

    stopped: list[SweepInterrupted] = []
    with signals_to(handler):
        yield stopped


def sweep_summary(study: Any, sweep: Sweep, sweep_dir: Path, url: str) -> dict[str, Any]:
    """What ``windowner sweep`` prints: counts, epochs run, and the best completed trial."""
    finished = study.get_trials(deepcopy=False, states=_states(FINISHED))
    completed = [t for t in finished if t.state.name == "COMPLETE"]
    best = study.best_trial if completed else None
    return {
        "sweep_dir": str(sweep_dir),
        "study": sweep.study,
        "storage": _masked(url),
        "metric": sweep.metric,
        "finished": len(finished),
        "pruned": len(finished) - len(completed),
        "epochs": sum(len(t.intermediate_values) for t in finished),
        "best": None
        if best is None
        else {
            "number": best.number,
            "value": best.value,
            "params": best.params,
            "run_dir": str(sweep_dir / best.user_attrs["run_dir"]),
        },
    }


def _masked(url: str) -> str:
    """A storage URL without its password."""
    head, sep, tail = url.partition("@")
    if not sep or ":" not in head.split("//", 1)[-1]:
        return url
    scheme, _, cred = head.partition("//")
    return f"{scheme}//{cred.split(':')[0]}:***@{tail}"


# ----------------------------------------------------------------------------- launchers


BLAS_VARIABLES = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


def blas_env(threads: int) -> dict[str, str]:
    """The environment of a trial process with BLAS/OpenMP limited to ``threads`` threads (or
    fewer, if the environment already asks for fewer)."""
    env = dict(os.environ)
    asked = [int(env[n]) for n in BLAS_VARIABLES if env.get(n, "").isdigit() and int(env[n]) > 0]
    threads = min([threads, *asked])
    for name in BLAS_VARIABLES:
        env[name] = str(threads)
    return env


def _die_with_parent() -> None:
    """In the child before exec: get SIGTERM when the driver dies (even by kill -9), so the trial
    saves ``last.npz`` and re-queues itself instead of running on as an orphan (Linux only)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


TRIAL_COMMAND = [sys.executable, "-m", "windowner.sweep", "trial"]


class LocalLauncher:
    """Trial processes on this machine, BLAS threads divided between them."""

    def __init__(self, workers: int) -> None:
        share = max(1, (os.cpu_count() or 1) // workers)
        self.threads = int(blas_env(share)["OMP_NUM_THREADS"])
        self.where = f"local, {self.threads} BLAS thread(s) per trial"

    def slots(self, workers: int | None) -> int:
        return workers or 1

    def start(self, job: dict[str, Any]) -> subprocess.Popen:
        proc = subprocess.Popen(
            TRIAL_COMMAND,
            stdin=subprocess.PIPE,
            env=blas_env(self.threads),
            preexec_fn=_die_with_parent,  # noqa: PLW1509 (no threads are started before exec)
        )
        assert proc.stdin is not None
        proc.stdin.write(json.dumps(job).encode())
        proc.stdin.close()
        return proc

    def done(self, proc: subprocess.Popen) -> bool:
        return proc.poll() is not None

    def stop(self, procs: list[subprocess.Popen], timeout: float = 60.0) -> None:
        """SIGTERM to every trial still running (each saves and re-queues itself), then wait."""
        for proc in procs:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for proc in procs:
            try:
                proc.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def close(self) -> None:
        pass


def run_trial_process(job: dict[str, Any]) -> int:
    """On a Dask worker: run one trial in its own process (training installs signal handlers,
    which only a main thread may do), with the worker's cores divided between its threads."""
    try:
        from distributed import get_worker

        nthreads = get_worker().state.nthreads
    except (ImportError, ValueError, AttributeError):
        nthreads = 1
    threads = max(1, (os.cpu_count() or 1) // nthreads)
    done = subprocess.run(TRIAL_COMMAND, input=json.dumps(job).encode(), env=blas_env(threads))
    return done.returncode


class DaskLauncher:
    """Trial processes on the workers of a Dask cluster, one Dask task per trial."""

    def __init__(self, address: str) -> None:
        try:
            from distributed import Client
        except ImportError:
            raise UsageError(f"--dask needs dask.distributed: {SWEEP_EXTRA}") from None
        try:
            self.client = Client(address, timeout="20s")
        except (OSError, TimeoutError) as exc:
            raise UsageError(f"--dask {address}: cannot reach the scheduler ({exc})") from None
        self.where = f"Dask at {address}"

    def slots(self, workers: int | None) -> int:
        """--workers, or by default one trial per Dask worker thread."""
        return workers or max(1, sum(self.client.nthreads().values()))

    def start(self, job: dict[str, Any]) -> Any:
        return self.client.submit(
            run_trial_process,
            job,
            pure=False,
            key=f"windowner-trial-{job['trial_id']}-{time.time_ns()}",
        )

    def done(self, future: Any) -> bool:
        return future.done()

    def stop(self, futures: list[Any]) -> None:
        """Nothing to do: a running trial cannot be interrupted through Dask and finishes by
        itself; a queued one is dropped by the scheduler when this client leaves, and its trial,
        left without heartbeat, is re-queued by the next driver."""

    def close(self) -> None:
        self.client.close()


# ----------------------------------------------------------------------------- one trial


def run_trial(job: dict[str, Any]) -> int:
    """Train one trial's run directory (resuming it if it holds a checkpoint), reporting the
    metric after each epoch to the pruner, and tell the study the outcome; returns the exit
    code (128 + signal when interrupted: the trial then re-queues itself)."""
    optuna = quiet_optuna()
    from windowner.train import Interrupted

    storage = make_storage(job["storage"], job["heartbeat"])
    study = optuna.load_study(
        study_name=job["study"], storage=storage, pruner=make_pruner(job["pruner"])
    )
    trial = optuna.trial.Trial(study, job["trial_id"])
    stop_beating = _heartbeat(storage, job["trial_id"], job["heartbeat"])
    run_dir = Path(job["run_dir"])
    try:
        summary, pruned = _train_trial(job, trial, run_dir)
    except Interrupted as exc:
        stop_beating()
        fail_and_requeue(study, job["trial_id"])
        return exc.exit_code
    except Exception as exc:  # a failed trial is recorded, not retried (it would fail again)
        if (signal_exc := signal_behind(exc)) is not None:  # a signal during an import
            stop_beating()
            fail_and_requeue(study, job["trial_id"])
            raise signal_exc from None
        stop_beating()
        with contextlib.suppress(Exception):  # unless the trial was already failed as stale
            trial.set_user_attr("error", f"{type(exc).__name__}: {exc}")
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
        _record(run_dir, {"state": "FAIL", "error": str(exc)})
        return 1
    stop_beating()
    metric = job["metric"].removeprefix("dev_")
    if pruned:
        study.tell(trial, state=optuna.trial.TrialState.PRUNED)
    else:
        study.tell(trial, summary["dev"][metric])
    final = study._storage.get_trial(job["trial_id"])
    _record(run_dir, {"state": final.state.name, "value": final.value})
    return 0


def _train_trial(job: dict[str, Any], trial: Any, run_dir: Path) -> tuple[dict[str, Any], bool]:
    from windowner.train import train

    if (run_dir / "summary.json").exists():  # trained before the process could tell the study
        return json.loads((run_dir / "summary.json").read_text()), False
    pruned = []

    def on_epoch(record: dict[str, Any]) -> bool:
        if job["metric"] not in record:
            raise UsageError(
                f"the sweep's metric {job['metric']} is not in the epoch records (no dev set?)"
            )
        trial.report(record[job["metric"]], record["epoch"])
        if trial.should_prune():
            pruned.append(record["epoch"])
            return True
        return False

    if (run_dir / "last.npz").exists():
        summary = train(run_dir / "config.yaml", resume=run_dir, on_epoch=on_epoch)
    else:  # a first attempt that died before its first checkpoint left nothing to resume
        runs.discard_unstarted(run_dir)
        config = cfg.from_dict(job["config"])
        summary = train(config, job["overrides"], out_dir=run_dir, on_epoch=on_epoch)
    return summary, bool(pruned)


def _heartbeat(storage: Any, trial_id: int, interval: float) -> Callable[[], None]:
    """Record the trial's heartbeat every ``interval`` seconds in a thread; returns its stop."""
    stop = threading.Event()

    def beat() -> None:
        while not stop.is_set():
            with contextlib.suppress(Exception):  # a missed beat is retried at the next one
                storage.record_heartbeat(trial_id)
            stop.wait(interval)

    thread = threading.Thread(target=beat, daemon=True)
    thread.start()

    def stop_beating() -> None:
        stop.set()
        thread.join()

    return stop_beating


def _record(run_dir: Path, outcome: dict[str, Any]) -> None:
    """Add the outcome to the trial's record (beside its run directory)."""
    from windowner.checkpoint import atomic_write_text

    path = trial_record(run_dir)
    data = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
    data.update(outcome)
    atomic_write_text(path, json.dumps(data, indent=2) + "\n")


def trial_main() -> int:
    """``python -m windowner.sweep trial``: the job as JSON on stdin."""
    try:
        return run_trial(json.loads(sys.stdin.read()))
    except WindownerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code


if __name__ == "__main__":
    if sys.argv[1:] != ["trial"]:
        sys.exit("usage: python -m windowner.sweep trial < job.json")
    sys.exit(trial_main())
