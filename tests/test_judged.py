"""Judged generations in ``studio eval``: scorers (a GRPO reward file unchanged), the judge's prompts, the
position swap and verdict parsing, the Wilson interval, an OpenAI-compatible judge, and the job end to end."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from conftest import STUDIO_BIN

from lorastudio import registry
from lorastudio.cli import main
from lorastudio.cli.eval_cmds import render_table
from lorastudio.errors import StudioError
from lorastudio.evaluate.job import create_eval, list_evals, summarise
from lorastudio.evaluate.judge import (
    combine,
    make_judge,
    pairwise_prompt,
    parse_rating,
    parse_verdict,
    rubric_prompt,
    wilson,
)
from lorastudio.evaluate.judged import (
    ANSWERS_FILE,
    VERDICTS_FILE,
    JudgedRun,
    Plan,
    read_prompts_file,
    render_notes,
)
from lorastudio.evaluate.runner import RESULTS_FILE
from lorastudio.evaluate.scorers import build_scorer, run_scorer
from lorastudio.evaluate.spec import make_spec
from lorastudio.recipe import RewardSpec
from lorastudio.train.run.eventlog import EVENTS_FILE, read_all
from lorastudio.train.trainer.rewards import check_rewards, score

# -- scorers -------------------------------------------------------------------------------------------

REWARD_FILE = '''
def says_arr(prompts, completions, **kwargs):
    """A GRPO reward as TRL calls it: 1 for a reply saying arr, plus 0.5 when it holds the answer column."""
    answers = kwargs.get("answer") or [None] * len(completions)
    return [
        (1.0 if "arr" in c.lower() else 0.0) + (0.5 if a and a in c else 0.0)
        for c, a in zip(completions, answers)
    ]
'''


def test_a_grpo_reward_file_scores_an_evaluation_unchanged(tmp_path: Path) -> None:
    path = tmp_path / "rewards.py"
    path.write_text(REWARD_FILE)
    target = f"{path}:says_arr"
    answers = ["Arr, it be Paris", "It is Paris", "arr"]
    rows = [{"answer": "Paris", "reference": None}] * 3
    check_rewards([RewardSpec(python=target)])  # the very file a GRPO recipe's grpo.rewards takes
    as_grpo = [s["total"] for s in score([RewardSpec(python=target)], answers, rows=rows)]
    scored = run_scorer(build_scorer(target), ["q"] * 3, answers, rows)
    assert scored.scores == as_grpo == [1.5, 0.5, 1.0]
    assert scored.failed == 0


@pytest.mark.parametrize(
    ("scorer", "answer", "reference", "expected"),
    [
        ("exact", "  Paris ", "paris", 1.0),
        ("exact", "Paris, France", "Paris", 0.0),
        ("exact", "anything", None, None),  # no reference: does not apply, left out of the mean
        ("contains", "The capital is PARIS.", "Paris", 1.0),
        ("contains", "The capital is Lyon.", "Paris", 0.0),
        ("regex:^Arr", "Arr matey", None, 1.0),
        ("regex:^Arr", "matey, arr", None, 0.0),
        ("rouge", "the cat sat on the mat", "the cat sat on the mat", 1.0),
        ("rouge", "a dog", "the cat sat on the mat", 0.0),
    ],
)
def test_reference_scorers(scorer: str, answer: str, reference: str | None, expected: float | None) -> None:
    scored = run_scorer(build_scorer(scorer), ["q"], [answer], [{"reference": reference}])
    assert scored.scores == [expected]


def test_rouge_is_rouge_l_f1() -> None:
    [value] = run_scorer(
        build_scorer("rouge"), ["q"], ["the cat sat"], [{"reference": "the cat sat down"}]
    ).scores
    assert value == pytest.approx(2 * 1.0 * 0.75 / 1.75)  # precision 3/3, recall 3/4


def test_reward_by_name_from_the_runs_grpo_recipe() -> None:
    recipe = registry.load("tiny-pirate-grpo")
    scorer = build_scorer("reward:arr and short", recipe)
    assert run_scorer(scorer, ["q", "q"], ["Arr, short", "no"], [{}, {}]).scores == [1.0, 0.0]
    with pytest.raises(StudioError) as err:
        build_scorer("reward:nope", recipe)
    assert str(err.value) == (
        "--score reward:nope: no reward 'nope' in the run's grpo.rewards "
        "(it has 'arr and short', 'about eight words')"
    )


BAD_SCORER = """
def picky(prompts, completions, **kwargs):
    if completions[0] == "boom":
        raise ValueError("cannot score boom")
    if completions[0] == "word":
        return ["high"]
    return [1.0]
"""


def test_a_scorer_that_raises_or_returns_a_wrong_type_is_named_and_counted(tmp_path: Path) -> None:
    path = tmp_path / "picky.py"
    path.write_text(BAD_SCORER)
    scorer = build_scorer(f"{path}:picky")
    scored = run_scorer(scorer, ["q"] * 4, ["fine", "boom", "word", "fine"], [{}] * 4)
    assert scored.scores == [1.0, None, None, 1.0]
    assert scored.failed == 2
    assert scored.errors[1] == f"--score: {path}:picky raised ValueError: cannot score boom (line 4)"
    assert scored.errors[2] == (
        f"--score: {path}:picky must return a list of numbers, one per completion; got ['high']"
    )
    assert scored.mean() == (1.0, 0.0, 2)  # the failures are not scores
    run = judged_run(tmp_path, None)
    run.scored = {"tuned": {scorer.name: scored}}
    assert render_notes(run.summary()) == [f"{scorer.name} on tuned: failed on 2 answers: {scored.errors[1]}"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "bleu",
            "--score bleu: not a scorer (exact, contains, regex:PATTERN, rouge, reward:NAME, FILE.py:function)",
        ),
        ("regex:(", "--score regex:(: not a valid regular expression"),
        ("/no/such.py:fn", "--score: /no/such.py:fn: the file does not exist"),
        ("reward:x", "--score reward:x: no reward 'x' in the run's grpo.rewards (it has none"),
    ],
)
def test_unknown_scorer_is_named(text: str, message: str) -> None:
    with pytest.raises(StudioError) as err:
        build_scorer(text)
    assert str(err.value).startswith(message)


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        (['{"prompt": "a"}', "not json"], "{dir}/p.jsonl:2: not JSON"),
        (['{"question": "a"}'], "{dir}/p.jsonl:1: needs a `prompt` string"),
        (['{"prompt": "a", "reference": 3}'], "{dir}/p.jsonl:1: `reference` must be a string"),
        ([""], "--prompts {dir}/p.jsonl: no prompts in the file"),
    ],
)
def test_bad_prompts_file_names_the_line(tmp_path: Path, lines: list[str], message: str) -> None:
    path = tmp_path / "p.jsonl"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(StudioError) as err:
        read_prompts_file(path)
    assert str(err.value).startswith(message.format(dir=tmp_path))


def test_prompts_file_keeps_reference_and_columns(tmp_path: Path) -> None:
    path = tmp_path / "p.jsonl"
    path.write_text('{"prompt": "2+2?", "reference": "4", "answer": "4"}\n{"prompt": "hi"}\n')
    first, second = read_prompts_file(path)
    assert (first.text, first.reference, first.columns()) == ("2+2?", "4", {"answer": "4", "reference": "4"})
    assert second.columns() == {"reference": None}
    assert second.conversation("Be brief.") == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "hi"},
    ]


# -- the judge's prompts, verdicts and interval --------------------------------------------------------


def test_pairwise_prompt_shows_both_answers_in_their_places() -> None:
    text = pairwise_prompt("Capital of France?", "It is Paris.", "Lyon.", reference="Paris")
    assert text.index("[User Question]\nCapital of France?") < text.index(
        "Assistant A's Answer]\nIt is Paris."
    )
    assert text.index("Assistant A's Answer]\nIt is Paris.") < text.index("Assistant B's Answer]\nLyon.")
    assert "[Reference Answer]\nParis\n" in text
    assert '"[[A]]" if assistant A is better, "[[B]]" if assistant B is better, "[[C]]" for a tie' in text
    assert "position bias" in text
    assert "[Reference Answer]" not in pairwise_prompt("q", "a", "b")


def test_rubric_prompt_carries_the_rubric() -> None:
    text = rubric_prompt("Say arr", "Arr!", "pirate speech scores high")
    assert "following this rubric: pirate speech scores high" in text
    assert "[Question]\nSay arr" in text and "Answer]\nArr!\n" in text
    assert '"Rating: [[5]]"' in text


@pytest.mark.parametrize(
    ("reply", "verdict"),
    [
        ("A", "A"),
        ("B.", "B"),
        ("[[B]]", "B"),
        ("Assistant A explains more. Final verdict: [[A]]", "A"),
        ("[[C]]", "tie"),
        ("tie", "tie"),
        ("Tie.", "tie"),
        ("[[ b ]]", "B"),
        ("[[A]] no wait [[B]]", None),  # two verdicts: none
        ("A great answer from both", None),
        ("the lemon me four six plus six", None),
        ("", None),
    ],
)
def test_verdict_parsing(reply: str, verdict: str | None) -> None:
    assert parse_verdict(reply) == verdict


@pytest.mark.parametrize(
    ("reply", "rating"),
    [("Rating: [[7]]", 7.0), ("8", 8.0), ("7/10", 7.0), ("[[8.5]]", 8.5), ("[[11]]", None), ("great", None)],
)
def test_rating_parsing(reply: str, rating: float | None) -> None:
    assert parse_rating(reply) == rating


@pytest.mark.parametrize(
    ("first", "swapped", "outcome"),
    [
        ("B", "A", "win"),  # preferred as B, and again as A after the swap
        ("A", "B", "loss"),
        ("A", "A", "tie"),  # a judge that always picks the first position decides nothing
        ("B", "B", "tie"),
        ("B", "tie", "tie"),
        ("tie", "tie", "tie"),
        (None, "A", None),  # an unreadable reply: the pair is not scored
        ("B", None, None),
    ],
)
def test_a_verdict_counts_only_when_both_orders_agree(
    first: str | None, swapped: str | None, outcome: str | None
) -> None:
    assert combine(first, swapped) == outcome  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("k", "n", "interval"),
    [
        (8, 10, (0.4902, 0.9433)),
        (0, 10, (0.0, 0.2775)),
        (10, 10, (0.7225, 1.0)),
        (5, 10, (0.2366, 0.7634)),
        (50, 100, (0.4038, 0.5962)),
    ],
)
def test_wilson_interval_on_known_counts(k: int, n: int, interval: tuple[float, float]) -> None:
    low, high = wilson(k, n)  # type: ignore[misc]
    assert (round(low, 4), round(high, 4)) == interval


def test_wilson_of_nothing_is_none() -> None:
    assert wilson(0, 0) is None


# -- an OpenAI-compatible judge ------------------------------------------------------------------------


def _answer_in(prompt: str, which: str) -> str:
    found = re.search(rf"Assistant {which}'s Answer\]\n(.*?)\n\[The End", prompt, re.S)
    assert found, prompt
    return found.group(1)


def prefers_paris(prompt: str) -> str:
    """A fair judge: the answer saying Paris wins, whichever position it is in."""
    a, b = "Paris" in _answer_in(prompt, "A"), "Paris" in _answer_in(prompt, "B")
    return "[[A]]" if a and not b else "[[B]]" if b and not a else "[[C]]"


@pytest.fixture
def endpoint() -> Iterator[tuple[str, list[dict[str, Any]], list[Callable[[str], str]]]]:
    """A local OpenAI-compatible server whose replies come from ``behaviour[0](prompt)``; requests recorded."""
    requests: list[dict[str, Any]] = []
    behaviour: list[Callable[[str], str]] = [prefers_paris]

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def _send(self, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            self._send({"object": "list", "data": [{"id": "judge-1", "object": "model", "owned_by": "me"}]})

        def do_POST(self) -> None:  # noqa: N802
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            requests.append({**body, "auth": self.headers.get("Authorization")})
            reply = behaviour[0](body["messages"][-1]["content"])
            self._send(
                {
                    "id": "x",
                    "object": "chat.completion",
                    "created": 0,
                    "model": body["model"],
                    "choices": [
                        {
                            "index": 0,
                            "finish_reason": "stop",
                            "message": {"role": "assistant", "content": reply},
                        }
                    ],
                }
            )

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/v1", requests, behaviour
    finally:
        server.shutdown()
        server.server_close()


def judged_run(tmp_path: Path, judge: Any, rubric: str | None = None) -> JudgedRun:
    """Two targets' answers to three prompts, as if generated: base says Lyon, tuned says Paris (twice)."""
    prompts_file = tmp_path / "p.jsonl"
    prompts_file.write_text(
        "".join(json.dumps({"prompt": f"Capital of France? ({i})"}) + "\n" for i in range(3))
    )
    spec = make_spec(
        targets=("base", "tuned"), judged={"prompts": str(prompts_file), "judge": "x", "rubric": rubric}
    )
    run = JudgedRun(spec, tmp_path, Plan(read_prompts_file(prompts_file), [], judge))
    run.answers = {
        "base": [{"text": "Lyon."}] * 3,
        "tuned": [{"text": "Paris."}, {"text": "Paris!"}, {"text": "Lyon."}],
    }
    return run


def verdict_lines(folder: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (folder / VERDICTS_FILE).read_text().splitlines()]


def test_pairwise_asks_each_pair_twice_with_positions_swapped(endpoint: Any, tmp_path: Path) -> None:
    url, requests, _ = endpoint
    monkey_key = "STUDIO_TEST_JUDGE_KEY"
    import os

    os.environ[monkey_key] = "sk-test"
    try:
        judge = make_judge(url, key_env=monkey_key)
        judge.load()
        assert judge.model == "judge-1"  # the first model the endpoint lists
        run = judged_run(tmp_path, judge)
        figures = run.judge_pairwise("tuned")
    finally:
        del os.environ[monkey_key]
    assert figures == {"against": "base", "win": 2, "tie": 1, "loss": 0, "unparsed": 0}
    assert len(requests) == 6 and {r["auth"] for r in requests} == {"Bearer sk-test"}
    assert {r["model"] for r in requests} == {"judge-1"} and {r["temperature"] for r in requests} == {0}
    first, swapped = (r["messages"][0]["content"] for r in requests[:2])
    assert (_answer_in(first, "A"), _answer_in(first, "B")) == ("Lyon.", "Paris.")
    assert (_answer_in(swapped, "A"), _answer_in(swapped, "B")) == ("Paris.", "Lyon.")
    lines = verdict_lines(tmp_path)
    assert [(line["verdicts"], line["outcome"]) for line in lines] == [
        (["B", "A"], "win"),
        (["B", "A"], "win"),
        (["tie", "tie"], "tie"),
    ]
    assert lines[0]["replies"] == ["[[B]]", "[[A]]"] and lines[0]["orders"] == [
        "A=base B=tuned",
        "A=tuned B=base",
    ]
    [win, tie, loss] = run.rows()
    assert win["metric"] == "judge/win" and win["targets"]["base"] is None
    cell = win["targets"]["tuned"]
    assert (cell["value"], cell["count"], cell["n"], cell["unparsed"]) == (2 / 3, 2, 3, 0)
    assert cell["ci"] == pytest.approx(list(wilson(2, 3)))  # type: ignore[arg-type]
    assert (tie["targets"]["tuned"]["count"], loss["targets"]["tuned"]["count"]) == (1, 0)
    assert render_table([win, tie, loss], ("base", "tuned")).splitlines() == [
        "task/metric  base  tuned",
        "judge/win    -     0.6667 [0.21, 0.94] 2/3",
        "judge/tie    -     0.3333 [0.06, 0.79] 1/3",
        "judge/loss   -     0.0000 [0.00, 0.56] 0/3",
    ]


def test_a_position_biased_judge_decides_nothing(endpoint: Any, tmp_path: Path) -> None:
    url, _, behaviour = endpoint
    behaviour[0] = lambda prompt: "[[A]]"
    judge = make_judge(url, model="m")
    run = judged_run(tmp_path, judge)
    assert run.judge_pairwise("tuned") == {"against": "base", "win": 0, "tie": 3, "loss": 0, "unparsed": 0}


def test_unparseable_replies_are_counted_kept_and_never_scored(endpoint: Any, tmp_path: Path) -> None:
    url, _, behaviour = endpoint
    replies = iter(["[[B]]", "[[A]]", "I cannot say", "[[A]]", "hmm", "???"])
    behaviour[0] = lambda prompt: next(replies)
    run = judged_run(tmp_path, make_judge(url, model="m"))
    assert run.judge_pairwise("tuned") == {"against": "base", "win": 1, "tie": 0, "loss": 0, "unparsed": 3}
    lines = verdict_lines(tmp_path)
    assert [line["replies"] for line in lines] == [
        ["[[B]]", "[[A]]"],
        ["I cannot say", "[[A]]"],
        ["hmm", "???"],
    ]
    assert [line["outcome"] for line in lines] == ["win", None, None]
    win = run.rows()[0]["targets"]["tuned"]
    assert (win["value"], win["n"], win["unparsed"]) == (1.0, 1, 3)
    assert render_notes(run.summary()) == [f"judge {url}: 3 replies on tuned had no verdict it could read"]


def test_rubric_grades_each_answer(endpoint: Any, tmp_path: Path) -> None:
    url, requests, behaviour = endpoint
    behaviour[0] = lambda prompt: "Rating: [[9]]" if "Paris" in prompt else "Rating: [[2]]"
    run = judged_run(tmp_path, make_judge(url, model="m"), rubric="correct capitals score high")
    assert run.judge_rubric("base") == {"rating": 2.0, "unparsed": 0}
    assert run.judge_rubric("tuned") == {"rating": pytest.approx(20 / 3), "unparsed": 0}
    assert "following this rubric: correct capitals score high" in requests[0]["messages"][0]["content"]
    [row] = run.rows()
    assert row["metric"] == "judge/rating"
    assert row["targets"]["tuned"]["delta"] == pytest.approx(20 / 3 - 2)
    assert [line["rating"] for line in verdict_lines(tmp_path)] == [2.0, 2.0, 2.0, 9.0, 9.0, 2.0]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_endpoint_refusing_is_one_message(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}/v1"
    run = judged_run(tmp_path, make_judge(url, model="m"))
    with pytest.raises(StudioError) as err:
        run.judge_pairwise("tuned")
    assert str(err.value).startswith(f"judge {url}: cannot reach the endpoint (")
    assert "\n" not in str(err.value)


# -- bad input on the command line: one message, no directory ----------------------------------------------


def studio(*args: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = main(list(args))
    return code, capsys.readouterr().err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["eval", "{model}", "--score", "exact"], "studio: --score, --judge and --rubric judge generations: give --prompts"),
        (["eval", "{model}"], "studio: name --tasks, or --prompts to judge generations"),
        (["eval", "{model}", "--prompts", "/no/such.jsonl"], "studio: --prompts /no/such.jsonl: no such file"),
        (["eval", "{model}", "--prompts", "{prompts}", "--score", "bleu"], "studio: --score bleu: not a scorer"),
        (
            ["eval", "{model}", "--prompts", "{prompts}", "--judge", "{model}"],
            "studio: eval spec: Value error, a pairwise judge compares two targets or more (or give a rubric)",
        ),
        (
            ["eval", "{model}", "{model}", "--prompts", "{prompts}", "--judge", "no-such-judge-run"],
            "studio: judge no-such-judge-run: ",
        ),
        (
            ["eval", "{model}", "--prompts", "{prompts}", "--judge", "http://127.0.0.1:1/v1", "--rubric", "r",
             "--judge-key-env", "STUDIO_NO_SUCH_VAR"],
            "studio: --judge-key-env STUDIO_NO_SUCH_VAR: the variable is not set",
        ),
        (["eval", "{model}", "--prompts", "held-out"], "studio: --prompts held-out: name a run target"),
    ],
)  # fmt: skip
def test_bad_judged_eval_says_one_thing(
    args: list[str], message: str, tiny_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    prompts = tmp_path / "p.jsonl"
    prompts.write_text('{"prompt": "hi"}\n')
    before = len(list_evals())
    code, err = studio(*(a.format(model=tiny_model, prompts=prompts) for a in args), capsys=capsys)
    assert code == 2 and err.startswith(message) and len(err.strip().splitlines()) == 1, err
    assert len(list_evals()) == before


# -- the job end to end ----------------------------------------------------------------------------------


def run_job(folder: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "lorastudio.evaluate.job", str(folder)],
        capture_output=True,
        text=True,
        timeout=900,
    )


def test_endpoint_refusing_fails_the_eval_with_its_cause(tiny_model: Path, tmp_path: Path) -> None:
    prompts = tmp_path / "p.jsonl"
    prompts.write_text('{"prompt": "hi"}\n')
    url = f"http://127.0.0.1:{free_port()}/v1"
    spec = make_spec(
        targets=(str(tiny_model),),
        judged={
            "prompts": str(prompts),
            "judge": url,
            "judge_model": "m",
            "rubric": "r",
            "max_new_tokens": 4,
        },
    )
    folder = create_eval(spec, home=tmp_path)
    result = run_job(folder)
    assert result.returncode == 2, result.stderr
    summary = summarise(folder)
    assert summary.status == "failed"
    assert summary.cause is not None and summary.cause.startswith(f"judge {url}: cannot reach the endpoint (")
    assert len((folder / ANSWERS_FILE).read_text().splitlines()) == 1  # the answers made are kept


def test_judge_not_loadable_fails_the_eval_with_its_cause(tiny_model: Path, tmp_path: Path) -> None:
    prompts = tmp_path / "p.jsonl"
    prompts.write_text('{"prompt": "hi"}\n')
    broken = tmp_path / "broken-model"
    broken.mkdir()
    (broken / "config.json").write_text("{not json")
    spec = make_spec(
        targets=(str(tiny_model),),
        judged={"prompts": str(prompts), "judge": str(broken), "rubric": "r", "max_new_tokens": 4},
    )
    folder = create_eval(spec, home=tmp_path)
    result = run_job(folder)
    assert result.returncode == 2, result.stderr
    summary = summarise(folder)
    assert summary.status == "failed"
    assert summary.cause is not None and summary.cause.startswith(f"judge {broken}: ")


def test_judged_eval_of_two_targets_with_the_tiny_model_as_its_own_judge(
    trained_run: Path, tmp_path: Path
) -> None:
    prompts = tmp_path / "prompts.jsonl"
    rows = [
        {"prompt": "What do sheep eat?", "reference": "grass"},
        {"prompt": "Where do dolphins live?", "reference": "in the sea"},
        {"prompt": "Say hello."},
    ]
    prompts.write_text("".join(json.dumps(r) + "\n" for r in rows))
    result = subprocess.run(
        [STUDIO_BIN, "eval", trained_run.name, "base", "--prompts", str(prompts), "--score", "contains",
         "--score", "regex:(?i)arr", "--judge", trained_run.name, "--max-new-tokens", "12", "--json"],
        capture_output=True, text=True, timeout=1200,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    folder = Path(json.loads(result.stdout)["path"])
    assert folder.parent == trained_run / "evals" and summarise(folder).status == "done"
    answers = [json.loads(line) for line in (folder / ANSWERS_FILE).read_text().splitlines()]
    assert [(a["eval_target"], a["prompt"]) for a in answers] == [
        (target, r["prompt"]) for target in (trained_run.name, "base") for r in rows
    ]
    assert all(a["tokens"] <= 12 and set(a["scores"]) == {"contains", "regex:(?i)arr"} for a in answers)
    assert [a["scores"]["contains"] is None for a in answers] == [False, False, True] * 2
    verdicts = verdict_lines(folder)
    assert [v["prompt"] for v in verdicts] == [r["prompt"] for r in rows]
    assert all(len(v["replies"]) == 2 and len(v["verdicts"]) == 2 for v in verdicts)
    unreadable = sum(x is None for v in verdicts for x in v["verdicts"])
    data = json.loads((folder / RESULTS_FILE).read_text())
    assert data["judged"]["unparsed"] == {"base": unreadable}
    assert data["judged"]["mode"] == "pairwise" and data["judged"]["judge"] == trained_run.name
    metrics = [row["metric"] for row in data["table"]]
    assert metrics == ["judged/contains", "judged/regex:(?i)arr", "judge/win", "judge/tie", "judge/loss"]
    win = data["table"][2]["targets"]["base"]
    assert win["n"] == sum(v["outcome"] is not None for v in verdicts) and win["unparsed"] == unreadable
    events = read_all(folder / EVENTS_FILE)
    [judged_event] = [e for e in events if e["kind"] == "eval_judge"]
    assert judged_event["target"] == "base" and judged_event.get("unparsed", 0) == unreadable
    assert [e["status"] for e in events if e["kind"] == "status"][-1] == "done"
    progress = [e for e in events if e["kind"] == "eval_progress"]
    assert (progress[-1]["done"], progress[-1]["total"]) == (3, 3)


def test_held_out_and_sample_prompts_come_from_the_run_recipe(tiny_model: Path) -> None:
    from lorastudio.evaluate.judged import recipe_prompts
    from lorastudio.train.trainer.samples import held_out_prompts

    recipe = registry.load("tiny-pirate")
    held = held_out_prompts(recipe, 4)
    prompts = recipe_prompts("held-out", recipe, 4)
    assert [(p.text, p.reference) for p in prompts] == [(h.text, h.reference) for h in held]
    assert all(p.reference for p in prompts)  # the rows' own replies: references for the scorers
    samples = recipe_prompts("samples", recipe, None)
    assert [p.text for p in samples] == [h.text for h in held[:3]]  # train.samples: held_out: 3
    from lorastudio.recipe import SamplesSection

    asked = SamplesSection(prompts=["Who are ye?"], held_out=0)
    custom = recipe.model_copy(update={"train": recipe.train.model_copy(update={"samples": asked})})
    assert [p.conversation(None) for p in recipe_prompts("samples", custom, None)] == [
        [{"role": "user", "content": "Who are ye?"}]
    ]
