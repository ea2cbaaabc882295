"""The Monitor's charts for the preference and RL methods, from the ``method_metrics`` events a run folded.

DPO, ORPO and SimPO: the rewards of the chosen and the rejected replies, their margin and the accuracy (how
often chosen outscores rejected). KTO: the same per label (desirable = chosen, undesirable = rejected) and
the KL estimate. Reward models: how often the chosen reply outscores the rejected one, the mean score
margin, and the batch's lowest, mean and highest score. GRPO: the reward's mean and std, each reward
function's mean, the KL (when ``grpo.beta`` is set) and the sampled completions' mean length.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from lorastudio.widgets.chart import LineChart

if TYPE_CHECKING:
    from lorastudio.train.run.runstate import RunState

MethodChart = tuple[str, str, list[tuple[str, str, str]]]
"""(chart id, title, [(series name, colour, metric key or a ``rewards/*/mean`` pattern)])."""

_PAIR_CHARTS: list[MethodChart] = [
    ("rewards", "rewards", [("chosen", "green", "rewards/chosen"), ("rejected", "red", "rewards/rejected")]),
    ("margin", "reward margin", [("margin", "cyan", "rewards/margins")]),
    ("accuracy", "accuracy", [("accuracy", "yellow", "rewards/accuracies")]),
]
METHOD_CHARTS: dict[str, list[MethodChart]] = {
    "dpo": _PAIR_CHARTS,
    "orpo": [*_PAIR_CHARTS, ("odds", "log odds ratio", [("log odds", "magenta", "log_odds_ratio")])],
    "kto": [
        (
            "rewards",
            "rewards per label",
            [("desirable", "green", "rewards/chosen"), ("undesirable", "red", "rewards/rejected")],
        ),
        ("margin", "reward margin", [("margin", "cyan", "rewards/margins")]),
        ("kl", "KL", [("kl", "magenta", "kl")]),
    ],
    "reward": [
        ("accuracy", "accuracy", [("accuracy", "yellow", "accuracy")]),
        ("margin", "score margin", [("margin", "cyan", "margin")]),
        (
            "scores",
            "scores",
            [("min", "red", "min_reward"), ("mean", "green", "mean_reward"), ("max", "blue", "max_reward")],
        ),
    ],
    "grpo": [
        ("reward", "reward", [("mean", "green", "reward"), ("std", "yellow", "reward_std")]),
        ("functions", "reward per function", [("*", "cyan", "rewards/*/mean")]),
        ("kl", "KL", [("kl", "magenta", "kl")]),
        ("length", "completion length", [("mean", "blue", "completions/mean_length")]),
    ],
}
_FUNCTION_COLOURS = ("cyan", "magenta", "yellow", "green", "red", "blue")


def charts_for(method: str) -> list[MethodChart]:
    return METHOD_CHARTS.get(method, [])


def add_method_series(charts: dict[str, LineChart], method: str) -> None:
    for key, _, series in charts_for(method):
        for name, colour, metric in series:
            if "*" not in metric:  # per-function series are added as their names first appear
                charts[key].add_series(name, colour)  # raw, so the legend names each series


def method_chart_points(
    state: RunState, sent: dict[str, int], method: str
) -> list[tuple[str, str, tuple[float, float]]]:
    """The (chart, series, (step, value)) points the state's method figures gained since ``sent`` (updated)."""
    fresh = state.method_points[sent.get("method_points", 0) :]
    sent["method_points"] = len(state.method_points)
    out = []
    for step, found, value in fresh:
        for key, _, series in charts_for(method):
            for name, _, metric in series:
                if "*" in metric:
                    head, _, tail = metric.partition("*")
                    if found.startswith(head) and found.endswith(tail):
                        out.append((key, found[len(head) : len(found) - len(tail)], (float(step), value)))
                elif found == metric:
                    out.append((key, name, (float(step), value)))
    return out


def ensure_series(chart: LineChart, name: str, count: int) -> None:
    """A reward function's series, added the first time it has a point."""
    if name not in chart.series:
        chart.add_series(name, _FUNCTION_COLOURS[count % len(_FUNCTION_COLOURS)])
