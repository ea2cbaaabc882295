"""GRPO's reward functions, built from a recipe's ``grpo.rewards``.

Each is a plain callable with TRL's reward signature, ``fn(prompts, completions, **columns) -> list[float]``,
named for the Monitor (TRL logs ``rewards/NAME/mean``). The built-ins cover format (regex), length, exact or
numeric match against a data column and keyword presence; ``all`` multiplies several into one; ``model`` scores
with a trained reward model (``train.method: reward``, see ``rewardmodel.py``). A user's
function comes from a Python file: loading it and calling it are wrapped so that a syntax error, a missing
function, an exception inside it (``sys.exit`` included) or a score that is not a finite number is ONE message
naming the field, the file and the function (a :class:`RewardError`, which the worker turns into a ``failed``
status with that cause).

Every reward runs in a helper process (:class:`RewardHost`), called with a time-out (``grpo.reward_timeout``):
a reward that never returns (an endless loop, a regex that backtracks for ever, a call that blocks) is killed
there, by its time-out or by a stop. Inside the training process nothing could end it: the stop handler only
sets a flag the trainer reads between steps, and a reward stuck in C code holds the interpreter.
"""

from __future__ import annotations

import importlib.util
import math
import pickle
import re
import signal
import subprocess
import sys
import threading
import time
import traceback
import weakref
from collections.abc import Callable, Sequence
from multiprocessing.connection import Connection, Pipe
from pathlib import Path
from typing import Any

from lorastudio.errors import StudioError
from lorastudio.recipe import LengthReward, RewardSpec

RewardFn = Callable[..., list[float | None]]
_NUMBER_RE = re.compile(r"-?\d+(?:[.,]\d+)?")


class RewardError(StudioError):
    """A reward function that cannot be loaded or that failed while scoring."""


class RewardsStopped(Exception):  # noqa: N818 - it is not an error: the run was asked to stop
    """A stop arrived while a reward was scoring: the reward was ended; the worker saves and ends ``stopped``."""


def _text(completion: Any) -> str:
    """A completion as text: TRL passes strings for string prompts and message lists for conversations."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, Sequence) and completion and isinstance(completion[-1], dict):
        return str(completion[-1].get("content", ""))
    return str(completion)


def _words(text: str) -> int:
    return len(text.split())


def _length_score(spec: LengthReward, words: int) -> float:
    score = 1.0
    if spec.max_words is not None and words > spec.max_words:
        score = min(score, max(0.0, 1.0 - (words - spec.max_words) / spec.max_words))
    if spec.min_words is not None and words < spec.min_words:
        score = min(score, words / spec.min_words if spec.min_words else 1.0)
    if spec.target_words is not None:
        score = min(score, max(0.0, 1.0 - abs(words - spec.target_words) / spec.target_words))
    return score


def _number(value: Any) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    found = _NUMBER_RE.findall(str(value))
    return float(found[-1].replace(",", ".")) if found else None


def describe(spec: RewardSpec) -> str:
    """A short name for the Monitor and the Preview: what the reward looks for."""
    if spec.name:
        return spec.name
    if spec.regex is not None:
        return f"regex {spec.regex}"
    if spec.length is not None:
        parts = [f"{k.split('_')[0]} {v}" for k, v in spec.length.model_dump().items() if v is not None]
        return "words " + ", ".join(parts)
    if spec.match is not None:
        return f"{'numeric' if spec.numeric else 'exact'} {spec.match}"
    if spec.keywords is not None:
        return f"{spec.require} of {', '.join(spec.keywords)}"
    if spec.python is not None:
        file, _, func = spec.python.rpartition(":")
        return f"{Path(file).name}:{func}"
    if spec.model is not None:
        return f"model {spec.model}"
    return " & ".join(describe(s) for s in spec.all or [])


def _scorer(spec: RewardSpec) -> Callable[[str, dict[str, Any]], float]:
    """One completion's score for a built-in reward (the row's columns in ``row``)."""
    flags = 0 if spec.case_sensitive else re.IGNORECASE
    if spec.regex is not None:
        pattern = re.compile(spec.regex, flags)
        return lambda text, row: 1.0 if pattern.search(text) else 0.0
    if spec.length is not None:
        length = spec.length
        return lambda text, row: _length_score(length, _words(text))
    if spec.match is not None:
        column, numeric, tolerance = spec.match, spec.numeric, spec.tolerance

        def match(text: str, row: dict[str, Any]) -> float:
            if column not in row:
                raise RewardError(
                    f"grpo.rewards: match: the data has no column {column!r} "
                    f"(it has {', '.join(sorted(row)) or 'none'})"
                )
            if numeric:
                got, want = _number(text), _number(row[column])
                return 1.0 if got is not None and want is not None and abs(got - want) <= tolerance else 0.0
            return 1.0 if text.strip() == str(row[column]).strip() else 0.0

        return match
    if spec.keywords is not None:
        needles = [re.compile(r"\b" + re.escape(k) + r"\b", flags) for k in spec.keywords]
        need_all = spec.require == "all"
        return lambda text, row: 1.0 if (all if need_all else any)(n.search(text) for n in needles) else 0.0
    raise ValueError("not a built-in reward")  # python and all are handled by the caller


def _rows(count: int, columns: dict[str, Any]) -> list[dict[str, Any]]:
    lists = {k: v for k, v in columns.items() if isinstance(v, list) and len(v) == count}
    return [{k: v[i] for k, v in lists.items()} for i in range(count)]


def load_user_function(target: str, field: str = "grpo.rewards") -> RewardFn:
    """``FILE.py:function`` imported from its file; any failure is one message naming the field and both."""
    file, _, name = target.rpartition(":")
    path = Path(file).expanduser()
    where = f"{field}: {path}:{name}"
    if not path.is_file():
        raise RewardError(f"{where}: the file does not exist")
    module_name = f"studio_rewards_{abs(hash(str(path.resolve())))}"
    try:
        spec = importlib.util.spec_from_file_location(module_name, path)
        if spec is None or spec.loader is None:
            raise RewardError(f"{where}: not a Python file")
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module
        spec.loader.exec_module(module)
    except SyntaxError as exc:
        raise RewardError(f"{where}: syntax error at line {exc.lineno}: {exc.msg}") from None
    except RewardError:
        raise
    except BaseException as exc:  # sys.exit at import time too: one message, never the host gone silent
        raise RewardError(f"{where}: importing the file raised {_exception(exc)}") from None
    func = getattr(module, name, None)
    if func is None:
        found = sorted(
            k
            for k, v in vars(module).items()
            if callable(v) and not k.startswith("_") and getattr(v, "__module__", None) == module_name
        )
        raise RewardError(f"{where}: the file has no function {name!r} (it has {', '.join(found) or 'none'})")
    if not callable(func):
        raise RewardError(f"{where}: {name!r} is not a function")
    return func


def _exception(exc: BaseException) -> str:
    """``ValueError: no score`` (``SystemExit: 3`` for ``sys.exit(3)``)."""
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def _call_user(
    func: RewardFn,
    target: str,
    prompts: list[Any],
    completions: list[Any],
    kwargs: dict[str, Any],
    field: str = "grpo.rewards",
) -> list[float | None]:
    file, _, name = target.rpartition(":")
    where = f"{field}: {file}:{name}"
    try:
        out = func(prompts=prompts, completions=completions, **kwargs)
    except RewardError:
        raise
    except BaseException as exc:  # SystemExit and KeyboardInterrupt from user code are its failures too
        frames = [
            f for f in traceback.extract_tb(exc.__traceback__) if f.filename == str(Path(file).expanduser())
        ]
        line = f" (line {frames[-1].lineno})" if frames else ""
        raise RewardError(f"{where} raised {_exception(exc)}{line}") from None
    try:
        # None is TRL's "does not apply to this reply" (it becomes NaN, skipped by its nansum); NaN or inf is not
        scores = [float(x) if x is not None else None for x in out]
        bad = next(((i, x) for i, x in enumerate(scores) if x is not None and not math.isfinite(x)), None)
    except (TypeError, ValueError):
        raise RewardError(
            f"{where} must return a list of numbers, one per completion; got {out!r:.80}"
        ) from None
    if bad is not None:
        raise RewardError(
            f"{where} returned {bad[1]!r} for completion {bad[0] + 1}: a reward must be a finite number "
            "(or None where it does not apply)"
        )
    if len(scores) != len(completions):
        raise RewardError(f"{where} returned {len(scores)} rewards for {len(completions)} completions")
    return scores


def user_reward(target: str, field: str) -> RewardFn:
    """A user's ``FILE.py:function`` as a reward: loaded now, each call's failure or bad return one
    :class:`RewardError` naming ``field``, the file and the function (``studio eval --score`` uses it too)."""
    user = load_user_function(target, field)

    def reward(prompts: list[Any], completions: list[Any], **kwargs: Any) -> list[float | None]:
        return _call_user(user, target, prompts, completions, kwargs, field)

    return reward


def build_reward(spec: RewardSpec, field: str = "grpo.rewards") -> RewardFn:
    """One reward callable, named :func:`describe` (unweighted: GRPO applies ``reward_weights``), run in this
    process; ``field`` (``grpo.rewards.0``) names it in its errors. :func:`build_rewards` runs them in a host."""
    if spec.python is not None:
        reward = user_reward(spec.python, f"{field}.python")
    elif spec.model is not None:
        from lorastudio.train.trainer.rewardmodel import (
            RewardModelError,
            RewardModelScorer,
            find_reward_model,
        )

        try:
            scorer = RewardModelScorer(find_reward_model(spec.model, f"{field}.model"))
        except RewardModelError as exc:
            raise RewardError(str(exc)) from None

        def reward(prompts: list[Any], completions: list[Any], **kwargs: Any) -> list[float | None]:
            return list(scorer(list(prompts), [_text(c) for c in completions]))
    elif spec.all is not None:
        parts = [build_reward(s, f"{field}.all.{i}") for i, s in enumerate(spec.all)]

        def reward(prompts: list[Any], completions: list[Any], **kwargs: Any) -> list[float | None]:
            scores: list[float | None] = [1.0] * len(completions)
            for part in parts:
                scores = [
                    None
                    if a is None or b is None
                    else a * b  # a part that does not apply: nor does the whole
                    for a, b in zip(
                        scores, part(prompts=prompts, completions=completions, **kwargs), strict=True
                    )
                ]
            return scores
    else:
        score = _scorer(spec)

        def reward(prompts: list[Any], completions: list[Any], **kwargs: Any) -> list[float | None]:
            rows = _rows(len(completions), kwargs)
            return [score(_text(c), row) for c, row in zip(completions, rows, strict=True)]

    reward.__name__ = describe(spec)
    return reward


def _names(specs: Sequence[RewardSpec]) -> list[str]:
    """Each reward's Monitor name; TRL keys its metrics by name, so two rewards never share one."""
    names = [describe(s) for s in specs]
    return [f"{n} #{names[:i].count(n) + 1}" if names.count(n) > 1 else n for i, n in enumerate(names)]


def _label(spec: RewardSpec, index: int) -> str:
    """How an error names a reward: its field, and for a user's function its file and name."""
    if spec.python is not None:
        return f"grpo.rewards.{index}.python: {spec.python}"
    if spec.model is not None:
        return f"grpo.rewards.{index}.model: {spec.model}"
    return f"grpo.rewards.{index} ({describe(spec)})"


# -- the reward host: every reward in a helper process, each call under a time-out ----------------------
HOST_START_S = 120.0
"""How long the reward process may take to start Python and import studio (a loaded machine is slow)."""

_TRL_LOGGERS = ("log_extra", "log_metric")
"""TRL's reward kwargs that are the trainer's own methods: the host records their calls, replayed here."""


def serve(fd: int) -> None:
    """The host process's loop (``python -c``, see :class:`RewardHost`): build the rewards, then score on demand."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # only the training process decides when to stop
    conn = Connection(fd)
    _die_with_parent()
    conn.send(("started", None))
    specs = [RewardSpec.model_validate(d) for d in conn.recv()]
    try:
        funcs = [build_reward(spec, f"grpo.rewards.{i}") for i, spec in enumerate(specs)]
    except RewardError as exc:
        conn.send(("error", str(exc)))
        return
    conn.send(("ok", None))
    while True:
        try:
            index, prompts, completions, kwargs = conn.recv()
        except (EOFError, OSError):
            return
        calls: list[tuple[str, tuple[Any, ...]]] = []
        for key in _TRL_LOGGERS:
            kwargs[key] = lambda *args, _key=key, _calls=calls: _calls.append((_key, args))
        try:
            conn.send(("ok", funcs[index](prompts=prompts, completions=completions, **kwargs), calls))
        except RewardError as exc:
            conn.send(("error", str(exc), calls))
        except BaseException as exc:  # a built-in's own failure: still one message, naming the reward
            conn.send(("error", f"{_label(specs[index], index)} raised {_exception(exc)}", calls))


def _die_with_parent() -> None:
    """Linux: the kernel kills the host when the training process dies, even one killed with SIGKILL."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _shippable(kwargs: dict[str, Any]) -> dict[str, Any]:
    """The kwargs the host can receive: the data's columns and TRL's ``trainer_state``; the trainer's own
    methods (``log_extra``, ``log_metric``) are stood in for there, anything else that does not pickle is left out."""
    out = {}
    for key, value in kwargs.items():
        if key in _TRL_LOGGERS or callable(value):
            continue
        try:
            pickle.dumps(value)
        except Exception:  # noqa: S112 - e.g. TRL's environments: live objects no other process can use
            continue
        out[key] = value
    return out


class RewardHost:
    """A helper process that builds the recipe's rewards and scores replies with them, one call at a time.

    Each call waits at most ``timeout`` seconds, and ends early when ``stop`` is set (the worker's stop flag,
    set by SIGTERM): the process is killed and :class:`RewardsStopped` raised, so a stop works whatever a
    reward does. A time-out or the process dying is a :class:`RewardError` naming the reward.
    """

    def __init__(
        self, specs: Sequence[RewardSpec], timeout: float = 60.0, stop: threading.Event | None = None
    ) -> None:
        self.specs = list(specs)
        self.timeout = timeout
        self.stop = stop
        self._called: set[int] = set()
        ours, theirs = Pipe()
        self.conn = ours
        code = "import sys; from lorastudio.train.trainer.rewards import serve; serve(int(sys.argv[1]))"
        self.process = subprocess.Popen(  # noqa: S603 - this interpreter, our own module
            [sys.executable, "-c", code, str(theirs.fileno())], pass_fds=[theirs.fileno()]
        )
        theirs.close()
        self._finalizer = weakref.finalize(self, _end, self.process, ours)
        try:
            self._receive(
                "starting", None, HOST_START_S
            )  # the interpreter's own start is not the rewards' time
            self.conn.send([s.model_dump(mode="json") for s in self.specs])
            reply = self._receive("loading the reward functions", None)
        except BaseException:
            self.close()
            raise
        if reply[0] == "error":
            self.close()
            raise RewardError(reply[1])

    def _receive(self, doing: str, index: int | None, limit: float | None = None) -> tuple[Any, ...]:
        who = _label(self.specs[index], index) if index is not None else "grpo.rewards"
        deadline = time.monotonic() + (limit or self.timeout)
        while not self.conn.poll(0.05):
            if self.stop is not None and self.stop.is_set():
                self.close()
                raise RewardsStopped(f"stopped while {who} was scoring")
            if self.process.poll() is not None:
                break
            if time.monotonic() > deadline:
                self.close()
                if limit is not None and index is None:
                    raise RewardError(f"{who}: the reward process did not start within {limit:g} s")
                allowed = f"{limit or self.timeout:g} s (grpo.reward_timeout{', with loading the model' * bool(limit)})"
                raise RewardError(f"{who} did not return within {allowed} while {doing}")
        try:
            return tuple(self.conn.recv())
        except (EOFError, OSError):  # it died (os._exit, a crash, a kill): say how
            try:
                code = self.process.wait(5)
                how = f" ({f'signal {signal.Signals(-code).name}' if code < 0 else f'exit status {code}'})"
            except (subprocess.TimeoutExpired, ValueError):
                how = ""
            self.close()
            raise RewardError(f"{who}: the reward process ended{how} while {doing}") from None

    def call(
        self, index: int, prompts: list[Any], completions: list[Any], kwargs: dict[str, Any]
    ) -> list[Any]:
        """The scores of reward ``index`` for these replies (None where it does not apply)."""
        if not self._finalizer.alive:
            raise RewardError(f"{_label(self.specs[index], index)}: the reward process has ended")
        self.conn.send((index, list(prompts), list(completions), _shippable(kwargs)))
        # a reward model loads on its first call: that call may also take the time a start may
        first = index not in self._called and _has_model(self.specs[index])
        self._called.add(index)
        status, value, calls = self._receive(
            f"scoring {len(completions)} replies", index, self.timeout + HOST_START_S if first else None
        )
        for key, args in calls:  # what the reward logged through TRL's log_extra / log_metric
            if callable(kwargs.get(key)):
                kwargs[key](*args)
        if status == "error":
            raise RewardError(value)
        bad = next(
            ((i, x) for i, x in enumerate(value) if x is not None and not math.isfinite(float(x))), None
        )
        if bad is not None:  # a built-in never gives one; checked here for every reward all the same
            raise RewardError(
                f"{_label(self.specs[index], index)} returned {bad[1]!r} for completion {bad[0] + 1}: "
                "a reward must be a finite number"
            )
        return list(value)

    def close(self) -> None:
        self._finalizer()


def _has_model(spec: RewardSpec) -> bool:
    return spec.model is not None or any(_has_model(s) for s in spec.all or [])


def _end(process: subprocess.Popen[bytes], conn: Connection) -> None:
    conn.close()
    if process.poll() is None:
        process.kill()  # it may be stuck in a reward: nothing gentler is sure to end it
    process.wait()


def build_rewards(
    specs: Sequence[RewardSpec], timeout: float = 60.0, stop: threading.Event | None = None
) -> tuple[list[RewardFn], list[float]]:
    """The recipe's reward functions for TRL, and their weights: every user file loaded first (so its errors come
    before the model loads), each call run in a :class:`RewardHost` under ``timeout`` and ended by ``stop``."""
    host = RewardHost(specs, timeout, stop)
    funcs: list[RewardFn] = []
    for index, name in enumerate(_names(specs)):

        def reward(
            prompts: list[Any], completions: list[Any], _index: int = index, **kwargs: Any
        ) -> list[Any]:
            return host.call(_index, prompts, completions, kwargs)

        reward.__name__ = name
        reward.host = host  # type: ignore[attr-defined] # kept alive as long as TRL holds the function
        funcs.append(reward)
    return funcs, [s.weight for s in specs]


def check_rewards(specs: Sequence[RewardSpec], timeout: float = 60.0) -> None:
    """Load every reward as a run would (a user's file imported, in a host process) and end; raises RewardError."""
    RewardHost(specs, timeout).close()


def score(
    specs: Sequence[RewardSpec],
    completions: list[str],
    rows: list[dict[str, Any]] | None = None,
    prompts: list[str] | None = None,
    timeout: float = 60.0,
) -> list[dict[str, float]]:
    """Each completion's score per reward, and the weighted ``total`` (what GRPO sums), outside training."""
    funcs, weights = build_rewards(specs, timeout)
    try:
        rows = rows or [{} for _ in completions]
        columns = {k: [r.get(k) for r in rows] for k in {k for r in rows for k in r}}
        prompts = prompts or [""] * len(completions)
        per = [
            [math.nan if x is None else x for x in f(prompts=prompts, completions=completions, **columns)]
            for f in funcs
        ]
    finally:
        for func in funcs[:1]:  # one host serves them all
            func.host.close()  # type: ignore[attr-defined]
    out = []
    for i in range(len(completions)):
        item = {f.__name__: per[j][i] for j, f in enumerate(funcs)}
        item["total"] = sum(w * per[j][i] for j, w in enumerate(weights))
        out.append(item)
    return out
