"""What every reward shares: TRL's call contract turned into (answer text, reference, task) per sample."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, NamedTuple

from lego_arta.parsing import completion_text, resolve_task
from lego_arta.scores import frame_size


class Sample(NamedTuple):
    """One sample of a reward batch: the completion's text, its reference (``None`` if absent), its task and the
    ``[width, height]`` of its query image as the model saw it (``None`` if unknown: the frame rule then keeps the
    raw coordinates)."""

    text: str
    reference: str | None
    task: str | None
    image_size: Sequence[float] | None = None


def samples(
    name: str,
    completions: Sequence[Any],
    solution: Sequence[Any] | None,
    task: Sequence[str | None] | None,
    *,
    image_size: Sequence[Sequence[float] | None] | None = None,
    needs_solution: bool = True,
) -> list[Sample]:
    """Pair each completion with its ``solution``, task (the ``task`` column, else inferred from the solution) and
    ``image_size`` (the dataset column of that name, when the dataset has it).

    Raises ``ValueError`` (naming the reward and the sample) when a column is missing or has the wrong length, or a
    task is unknown: those are dataset errors, not model errors. Without ``solution`` and ``task`` (allowed only
    when ``needs_solution`` is false) the task is ``None``.
    """
    n = len(completions)
    if solution is None and needs_solution:
        raise ValueError(f"reward {name!r} needs the `solution` column (the reference answers)")
    for column, values in (("solution", solution), ("task", task), ("image_size", image_size)):
        if values is not None and len(values) != n:
            raise ValueError(f"reward {name!r}: {len(values)} values in `{column}` for {n} completions")
    out = []
    for i, completion in enumerate(completions):
        reference = None if solution is None else solution[i]
        if reference is not None and not isinstance(reference, str):
            raise ValueError(f"reward {name!r}: solution[{i}] is {type(reference).__name__}, expected a string")
        given = None if task is None else task[i]
        if given is None and reference is None:
            sample_task = None
        else:
            try:
                sample_task = resolve_task(given, reference or "")
            except ValueError as err:
                raise ValueError(f"reward {name!r}: task[{i}]: {err}") from err
        size = None if image_size is None else image_size[i]
        if size is not None:
            try:
                frame_size(size)
            except ValueError as err:
                raise ValueError(f"reward {name!r}: image_size[{i}]: {err}") from err
        out.append(Sample(completion_text(completion), reference, sample_task, size))
    return out


class TaskReward:
    """A reward in TRL's contract that rewards the samples of one task and returns ``None`` for the others.

    Subclasses set ``__name__`` (TRL logs ``rewards/<__name__>/mean``) and ``task`` (``None``: every task) and
    implement :meth:`reward_sample`, or :meth:`reward_and_side_metrics` when they also report side metrics (TRL's
    ``log_metric`` gets each one's mean over the batch's on-task samples). The batch handling and column checks live
    here, once.
    """

    __name__: str
    task: ClassVar[str | None] = None
    needs_solution: ClassVar[bool] = True

    def __call__(
        self,
        completions: Sequence[Any],
        solution: Sequence[str] | None = None,
        task: Sequence[str | None] | None = None,
        image_size: Sequence[Sequence[float] | None] | None = None,
        **kwargs: Any,
    ) -> list[float | None]:
        batch = samples(
            self.__name__, completions, solution, task, image_size=image_size, needs_solution=self.needs_solution
        )
        out: list[float | None] = []
        side: dict[str, list[float]] = {}
        for i, sample in enumerate(batch):
            if self.task is not None and sample.task != self.task:
                out.append(None)
                continue
            value, metrics = self.reward_and_side_metrics(i, sample)
            out.append(value)
            for key, metric in metrics.items():
                side.setdefault(key, []).append(metric)
        log_metric = kwargs.get("log_metric")  # TRL's GRPOTrainer passes it (trl >= 1.0)
        if callable(log_metric):
            for key, values in side.items():
                log_metric(key, sum(values) / len(values))
        return out

    def reward_sample(self, index: int, sample: Sample) -> float:
        """The reward of one on-task sample (``index`` is its position in the batch, for error messages)."""
        raise NotImplementedError

    def reward_and_side_metrics(self, index: int, sample: Sample) -> tuple[float, Mapping[str, float]]:
        """The reward of one on-task sample and its side metrics (none unless a subclass reports some)."""
        return self.reward_sample(index, sample), {}
