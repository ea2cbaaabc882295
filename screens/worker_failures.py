"""How a screen surfaces the failure of a worker it started: a notification, then its own ``worker_failed``.

Textual posts ``Worker.StateChanged`` to the node that started the worker and does not bubble it, so each
screen hears only its own workers: a failed load lands on the screen that ran it, even when another screen
has been pushed over it since, and exactly once.
"""

from __future__ import annotations

from typing import Any

from textual.worker import Worker, WorkerState

from lorastudio.errors import StudioError


def failure_message(error: BaseException | None) -> str:
    """A worker's exception as one line: a studio error's own words, else its type and message."""
    return str(error) if isinstance(error, StudioError) else f"{type(error).__name__}: {error}"


class HandlesWorkerFailures:
    """Mixed into a screen: its failed workers notify, and call ``self.worker_failed(worker, message)``."""

    def worker_failed(self, worker: Worker[Any], message: str) -> None:
        """Show the failure on the screen; the default shows only the notification."""

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.state != WorkerState.ERROR:
            return
        message = failure_message(event.worker.error)
        self.notify(message, title="error", severity="error", timeout=12)  # type: ignore[attr-defined]
        self.worker_failed(event.worker, message)
