"""mnn.sklearn's MLPClassifier beside scikit-learn's on the digits: accuracy and fit time.

Both get the same data (mnn's embedded digits, 1,438 training and 359 test images,
pixels scaled to [0, 1]), the same hidden sizes and the same parameters (scikit-learn's
defaults: Adam, learning rate 1e-3, batch 200, at most 200 epochs, the same stopping
rule), and the same seeds: the k-th fit of each contender uses ``random_state=k``.

A unit of work is one whole ``fit``. The harness runs the two contenders in turn
(round-robin) and reports the fit times; afterwards every fitted model is scored on
the test images (untimed). The notes give the mean accuracy of each over the seeds,
its difference in points, the epochs each ran (``n_iter_``) and the time per epoch,
which compares the steps even where the two stopped after different epoch counts.

BLAS runs on one thread (``--threads``; 0 leaves the library's default): the GEMMs
here are small (200 x 64 x 100), so more threads buy little, and on a shared
machine they fight with other processes for the cores (one fit took 50x longer
with two threads than with one while other jobs ran).

    python -m benchmarks.sklearn_digits [--hidden 100] [--repeats 5] [--json out.json]
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import warnings

from benchmarks.harness import Contender, add_timing_arguments, compare, write_result

REFERENCE = "scikit-learn"
CONTENDER = "mnn.sklearn"


def classifiers() -> dict:
    """The two ``MLPClassifier`` classes by contender name."""
    from sklearn.neural_network import MLPClassifier as SklearnMLP

    from mnn.sklearn import MLPClassifier as MnnMLP

    return {REFERENCE: SklearnMLP, CONTENDER: MnnMLP}


class Fits:
    """Calling it fits a fresh classifier with the next seed; every fit is kept for scoring."""

    def __init__(self, make, data, params: dict):
        self.make, self.data, self.params = make, data, params
        self.fitted = []

    def __call__(self):
        (x, y), _ = self.data
        model = self.make(random_state=len(self.fitted), **self.params)
        with warnings.catch_warnings():  # max_iter reached: expected, and the same for both
            warnings.simplefilter("ignore")
            model.fit(x, y)
        self.fitted.append(model)
        return model

    def summary(self, median_ms: float) -> dict:
        """Accuracy per seed on the test data, epochs per fit, and time per epoch."""
        _, (x_test, y_test) = self.data
        accuracy = [100.0 * float(model.score(x_test, y_test)) for model in self.fitted]
        epochs = [model.n_iter_ for model in self.fitted]
        return {"accuracy_percent": accuracy, "mean_accuracy_percent": statistics.mean(accuracy),
                "epochs": epochs, "median_epochs": statistics.median(epochs),
                "ms_per_epoch": median_ms / statistics.median(epochs)}


def load():
    """``((x_train, y_train), (x_test, y_test))``: mnn's digits as host NumPy arrays."""
    from mnn.data import load_digits

    train, test = load_digits()
    return (train.inputs, train.labels), (test.inputs, test.labels)


def run(hidden: tuple[int, ...], repeats: int, warmup: int, sample_s: float,
        max_iter: int, threads: int) -> dict:
    data = load()
    params = {"hidden_layer_sizes": hidden, "max_iter": max_iter}
    # Imported before the thread limit: a BLAS that loads later (SciPy's) would escape it.
    fits = {name: Fits(make, data, params) for name, make in classifiers().items()}
    with _threads(threads):
        result = _run(fits, repeats, warmup, sample_s)
    return result


def _threads(threads: int):
    """A context with every thread pool (BLAS, OpenMP) limited to ``threads``; 0: no limit."""
    if not threads:
        return contextlib.nullcontext()
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=threads)


def _run(fits: dict, repeats: int, warmup: int, sample_s: float) -> dict:
    result = compare([Contender(name, lambda f=f: f) for name, f in fits.items()],
                     reference=REFERENCE, repeats=repeats, warmup=warmup, sample_s=sample_s)
    for entry in result["results"]:
        entry.update(fits[entry["name"]].summary(entry["median_ms"]))
    ours, theirs = (next(r for r in result["results"] if r["name"] == name)
                    for name in (CONTENDER, REFERENCE))
    result["accuracy_difference_points"] = (ours["mean_accuracy_percent"]
                                            - theirs["mean_accuracy_percent"])
    result["epoch_time_ratio"] = ours["ms_per_epoch"] / theirs["ms_per_epoch"]
    n_seeds = len(ours["accuracy_percent"])
    result["notes"] = [
        f"Test accuracy on the 359 held-out digits, mean over {n_seeds} seeds: "
        f"{REFERENCE} {theirs['mean_accuracy_percent']:.2f}%, {CONTENDER} "
        f"{ours['mean_accuracy_percent']:.2f}% (difference "
        f"{result['accuracy_difference_points']:+.2f} points).",
        f"Epochs per fit (median): {REFERENCE} {theirs['median_epochs']:g}, {CONTENDER} "
        f"{ours['median_epochs']:g}; time per epoch {CONTENDER} / {REFERENCE} = "
        f"{result['epoch_time_ratio']:.2f}x."]
    return result


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hidden", type=int, nargs="*", default=[100],
                        help="hidden layer sizes (default: 100, scikit-learn's default)")
    parser.add_argument("--max-iter", type=int, default=200, help="epochs at most per fit")
    parser.add_argument("--threads", type=int, default=1,
                        help="BLAS threads (threadpoolctl); 0: the library's default")
    add_timing_arguments(parser, repeats=5, warmup=1, sample_s=0.0)  # a sample: one whole fit
    args = parser.parse_args(argv)
    hidden = tuple(args.hidden)
    result = run(hidden, args.repeats, args.warmup, args.sample_s, args.max_iter, args.threads)
    write_result(result, args.json, kind="sklearn",
                 title=f"MLPClassifier fit on digits, hidden {hidden}, {args.max_iter} epochs at "
                 f"most, BLAS threads: {args.threads or 'default'}",
                 params={"hidden": list(hidden), "max_iter": args.max_iter,
                         "threads": args.threads})


if __name__ == "__main__":
    main()
