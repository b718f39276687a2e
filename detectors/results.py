"""The results detectors return: frozen dataclasses that ``monitor`` exports and ``alerts`` reads."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "AccuracyEstimate",
    "DataQualityResult",
    "DriftResult",
    "FairnessResult",
    "GroupFairness",
    "ModelDataQuality",
    "ModelDrift",
    "QualityResult",
    "SequentialResult",
    "TrafficResult",
]


@dataclass(frozen=True)
class TrafficResult:
    """Latency quantiles, error ratio and cost per call quantiles of one window.

    ``latency_quantiles_ms`` pairs each quantile with its value, and is empty
    when no event of the window carried a latency; ``cost_quantiles`` likewise
    for the calls' costs (empty too for a model without prices).
    """

    n_events: int
    n_latencies: int
    latency_quantiles_ms: tuple[tuple[float, float], ...]
    error_ratio: float
    cost_quantiles: tuple[tuple[float, float], ...] = ()


@dataclass(frozen=True)
class DriftResult:
    """One feature's two-sample test of a window against the reference.

    For a test with a p-value, ``threshold`` is the significance level and the
    feature drifted when ``p_value < threshold``; for a distance (``p_value`` is
    None) it drifted when ``statistic >= threshold``. ``unseen_share`` is the
    share of window values in categories the reference never saw (0 for numbers).
    """

    method: str
    statistic: float
    p_value: float | None
    threshold: float
    drifted: bool
    unseen_share: float = 0.0


@dataclass(frozen=True)
class ModelDrift:
    """One model's window against its reference: each tested feature's result, corrected together.

    ``features`` maps a feature's label (a text feature's descriptors are
    ``prompt.length_chars`` and so on) to its result; features with too few
    values on either side are not tested and not listed.
    """

    features: dict[str, DriftResult]
    n_window: int
    n_reference: int
    reference_age_ms: float

    @property
    def drifted(self) -> list[str]:
        """Labels of the features that drifted."""
        return [label for label, result in self.features.items() if result.drifted]

    @property
    def drift_share(self) -> float:
        """Share of the tested features that drifted (0 when none could be tested)."""
        return len(self.drifted) / len(self.features) if self.features else 0.0


@dataclass(frozen=True)
class DataQualityResult:
    """One data-quality check of a feature's window against its reference (see ``detectors.data_quality``).

    ``share`` is the window's share (of its ``n`` rows, or of its ``n`` present values for ``out_of_range`` and
    ``unseen_category``), ``reference_share`` the reference's own; the check is ``flagged`` when ``p_value``, of
    a one-sided test that the window's share is the greater, is at most ``threshold`` (after correction).
    """

    share: float
    reference_share: float
    n: int
    p_value: float
    threshold: float
    flagged: bool


@dataclass(frozen=True)
class ModelDataQuality:
    """One model's data-quality checks, by feature and then check name, corrected together."""

    checks: dict[str, dict[str, DataQualityResult]]

    @property
    def flagged(self) -> list[tuple[str, str]]:
        """The (feature, check) pairs flagged."""
        return [(feature, check) for feature, checks in self.checks.items() for check, r in checks.items() if r.flagged]


@dataclass(frozen=True)
class GroupFairness:
    """One group's figures in a window (see ``detectors.fairness.FairnessStats``).

    ``outcome_rate`` is the share of the group's rows with the positive outcome,
    ``outcome_rate_lower``/``_upper`` its Wilson score interval. The label-based
    figures count only the ``n_labelled`` rows that have a label, and are NaN
    where undefined (no labelled positives for the true positive rate, no
    labelled negatives for the false positive rate, no labels for accuracy).
    ``sufficient`` is False for a group with fewer rows than the minimum; its
    figures are reported but left out of the model-level disparities.
    """

    n: int
    sufficient: bool
    outcome_rate: float
    outcome_rate_lower: float
    outcome_rate_upper: float
    n_labelled: int
    true_positive_rate: float
    false_positive_rate: float
    accuracy: float


@dataclass(frozen=True)
class FairnessResult:
    """One sensitive attribute's groups in a window and the model-level disparities between them.

    ``groups`` maps each group's name (largest first, then ``"__other__"`` for
    the pooled tail) to its figures; ``n_pooled_groups`` is the number of
    distinct values folded into ``"__other__"`` by the cap. The disparities are
    NaN when fewer than two groups qualify.
    """

    groups: dict[str, GroupFairness]
    demographic_parity_difference: float
    disparate_impact_ratio: float
    equalized_odds_difference: float
    n_pooled_groups: int

    @property
    def four_fifths_violated(self) -> bool:
        """The four-fifths rule: the lowest outcome rate is under 80% of the highest (False when NaN)."""
        return self.disparate_impact_ratio < 0.8


@dataclass(frozen=True)
class QualityResult:
    """Quality figures of one window, each NaN when it cannot be computed (see ``detectors.quality.QualityStats``).

    The names are the ``metric`` label values of ``driftwarden_quality``.
    ``label_coverage`` is ``n_labelled / n_events``; the label-based figures
    use the rows that have both a prediction and a label.
    """

    n_events: int
    n_labelled: int
    label_coverage: float
    accuracy: float
    precision: float
    recall: float
    f1: float
    mae: float
    rmse: float
    feedback_positive_ratio: float
    judge_score_mean: float
    refusal_ratio: float
    empty_response_ratio: float
    error_ratio: float
    json_valid_ratio: float


@dataclass(frozen=True)
class AccuracyEstimate:
    """Label-free estimate of a window's accuracy and its band (see ``detectors.accuracy_estimate``).

    ``n`` is the number of window rows with a score; all three figures are NaN when it is 0.
    """

    estimated: float
    lower: float
    upper: float
    n: int


@dataclass(frozen=True)
class SequentialResult:
    """One tick of a candidate version's metric against its baseline's, tested anytime-valid
    (see ``detectors.sequential.AnytimeTTest``).

    ``effect`` is this tick's difference of means, candidate minus baseline (NaN while an arm has no value).
    ``p_value`` is the least p-value of all the ticks tested so far and ``lower``/``upper`` the intersection of
    their confidence intervals for the effect, so both may be read at every tick and acted on whenever they
    say so: for Gaussian values with one variance in both arms, the probability that ``significant`` is ever
    True without a true difference of means is at most ``alpha``, uniformly over all ticks and however the
    ticks are chosen, and the interval holds the true difference at all ticks at once with probability at least
    ``1 - alpha``. For other values (0/1 outcomes, latencies) the guarantee holds asymptotically, as the arms
    grow. ``tested`` says whether this tick's values could be tested (both arms at ``min_samples``, some
    spread); until the first test the p-value is 1 and the interval ``(-inf, inf)``. The interval is empty
    (``lower > upper``) only when the ticks contradict each other, which, under the model, happens with
    probability at most ``alpha``. ``significant`` is ``p_value <= alpha``.
    """

    effect: float
    lower: float
    upper: float
    p_value: float
    n_baseline: int
    n_candidate: int
    tested: bool
    significant: bool
