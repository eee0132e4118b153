"""Classifier two-sample test (C2ST): can a classifier tell the samples from fresh data?"""

from __future__ import annotations

import math

import numpy as np
import torch

from ebmbench import EvalContext, Metric, Param, ToyDensity

__all__ = ["C2ST", "c2st_accuracy"]


def c2st_accuracy(
    x: np.ndarray,
    y: np.ndarray,
    *,
    classifier: str = "knn",
    folds: int = 5,
    n_neighbors: int = 0,
    seed: int = 0,
) -> tuple[float, float]:
    """Cross-validated accuracy of a classifier separating ``x`` (label 0) from ``y`` (1).

    Features are standardised on each training fold. ``knn`` is a k-nearest-neighbour
    vote (k = ``n_neighbors``, or ⌈√N⌉ for N = len(x) + len(y) when 0); ``mlp`` is
    scikit-learn's MLPClassifier with two hidden layers of 10·d units and early stopping
    (as the C2ST of sbi, Lueckmann et al. 2021). Every point is predicted once, by the
    model of the fold that held it out.

    Returns:
        (accuracy, its binomial standard error √(a(1 − a)/N)).

    >>> rng = np.random.default_rng(0)
    >>> acc, se = c2st_accuracy(rng.normal(size=(200, 2)), rng.normal(size=(200, 2)) + 10)
    >>> acc
    1.0
    """
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    features = np.concatenate([x, y]).astype(np.float64)
    labels = np.concatenate([np.zeros(len(x), dtype=int), np.ones(len(y), dtype=int)])
    n = len(labels)
    if classifier == "knn":
        k = n_neighbors or math.ceil(math.sqrt(n))
        model = KNeighborsClassifier(n_neighbors=k)
    elif classifier == "mlp":
        width = 10 * features.shape[1]
        model = MLPClassifier(hidden_layer_sizes=(width, width), max_iter=1000,
                              early_stopping=True, random_state=seed)
    else:
        raise ValueError(f"unknown classifier {classifier!r}; valid: knn, mlp")
    cv = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    predicted = cross_val_predict(make_pipeline(StandardScaler(), model), features, labels, cv=cv)
    acc = float((predicted == labels).mean())
    return acc, math.sqrt(acc * (1 - acc) / n)


class C2ST(Metric):
    """Classifier two-sample test accuracy of samples vs fresh data (↓, 0.5 is ideal).

    ``c2st_accuracy`` is the cross-validated accuracy (:func:`c2st_accuracy`) of a
    classifier telling m = min(#samples, ``max_samples``) samples from m fresh draws of the
    density (Lopez-Paz & Oquab 2017). 0.5 means indistinguishable, 1 fully separated. It is
    reported raw and ranked lower-is-better: values below 0.5 arise only from noise (see
    ``c2st_accuracy_se``, the binomial standard error over the 2m held-out predictions),
    so ranking on |acc − 0.5| would reward nothing real.
    """

    name = "c2st"
    description = "Classifier two-sample test accuracy, samples vs fresh data (0.5 = ideal)"
    higher_is_better = {"c2st_accuracy": False}
    needs_samples = True
    params = {
        "max_samples": Param(1000, "samples (and data) compared", smoke=256, full=4000, low=10),
        "classifier": Param("knn", "the classifier", choices=("knn", "mlp")),
        "folds": Param(5, "cross-validation folds", low=2),
        "n_neighbors": Param(0, "k for knn; 0 means ceil(sqrt(2m))", low=0),
    }

    def applies_to(self, combo) -> bool:
        return isinstance(combo.dataset, ToyDensity)

    def compute(self, ctx: EvalContext) -> dict[str, float]:
        density: ToyDensity = ctx.dataset  # type: ignore[assignment]
        x = ctx.samples.reshape(len(ctx.samples), -1)[: self.hparams["max_samples"]]
        y = density.sample(len(x), ctx.generator(salt=401))
        seed = int(torch.randint(0, 2**31 - 1, (1,), generator=ctx.generator(salt=402)))
        acc, se = c2st_accuracy(
            x.detach().double().cpu().numpy(), y.double().numpy(),
            classifier=self.hparams["classifier"], folds=self.hparams["folds"],
            n_neighbors=self.hparams["n_neighbors"], seed=seed,
        )
        return {"c2st_accuracy": acc, "c2st_accuracy_se": se}
