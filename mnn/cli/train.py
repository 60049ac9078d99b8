"""``mnn train``: a Linear-ReLU-Linear network with cross-entropy, on any backend and device.

One epoch = one shuffled pass over the training data in mini-batches. After
each epoch the network is scored on the held-out test data (never trained on).
The data are moved to the device once; the progress bar shows the running loss
and the throughput in samples per second.

Data-parallel: ``--nproc N`` starts N ranks of this command on this machine
(``mnn.distributed.launch``), and ``torchrun ... -m mnn train`` starts them on one
machine or several. Each rank trains on its share of every batch
(``--batch-size`` samples per rank) and the gradients are averaged after each
backward (``mnn.distributed``); rank 0 prints, plots and saves. See docs/distributed.md.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

import mnn
from mnn import distributed
from mnn.cli.common import (
    PLOT_FORMATS,
    PLOT_SUFFIXES,
    CommandError,
    backend_help,
    check_learning_rate,
    check_output_path,
    check_seed,
    limit_threads,
    load_dataset,
    plot_destination,
    predictions,
    progress_bar,
    pyplot,
    resolve_target,
    save_figure,
)
from mnn.data import Batches, DistributedBatches

OPTIMIZERS = {"sgd": mnn.optim.SGD, "adam": mnn.optim.Adam, "adamw": mnn.optim.AdamW}
N_CLASSES = 10


DEFAULT_PLOT = "<dataset>-curves.png"


def add_arguments(parser) -> None:
    parser.add_argument("--dataset", default="digits",
                        help="digits (8x8 digits embedded in mnn, no download; the default) or "
                             "mnist (IDX files in --data-dir)")
    parser.add_argument("--data-dir", default="mnist-data",
                        help="directory with the MNIST IDX files (default: mnist-data)")
    parser.add_argument("--download", action="store_true",
                        help="download missing MNIST files into --data-dir (checksums checked)")
    parser.add_argument("--backend", default="numpy", help=backend_help())
    parser.add_argument("--device", default=None,
                        help="cpu, cuda:0, ... (default: the backend's first device)")
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    parser.add_argument("--epochs", type=int, default=20, help="passes over the data (20)")
    parser.add_argument("--batch-size", type=int, default=32, help="samples per step (32)")
    parser.add_argument("--lr", type=float, default=None,
                        help="learning rate (default: 1e-3 for adam/adamw, 0.1 for sgd)")
    parser.add_argument("--optimizer", default="adam", choices=sorted(OPTIMIZERS))
    parser.add_argument("--hidden", type=int, default=256, help="hidden units (256)")
    parser.add_argument("--seed", type=int, default=0,
                        help="seeds the initial weights and the shuffling (0)")
    parser.add_argument("--save", default=None, metavar="PATH",
                        help="write the trained model and optimizer to this .safetensors file "
                             "(atomically: an old file is replaced only by a complete new one)")
    parser.add_argument("--plot", default=DEFAULT_PLOT, metavar="IMAGE",
                        help=f"write the loss and accuracy curves to this image ({PLOT_FORMATS}; "
                             "needs matplotlib; default: <dataset>-curves.png when matplotlib "
                             "is installed; --plot none: no plot)")
    parser.add_argument("--threads", type=int, default=1,
                        help="CPU threads for NumPy's BLAS and PyTorch (1, fastest for small "
                             "networks; 0: the libraries' default)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.add_argument("--nproc", type=int, default=1,
                        help="processes that train data-parallel on this machine, each on "
                             "--batch-size samples a step (1: no torch.distributed; torchrun "
                             "... -m mnn train starts them across machines)")
    parser.add_argument("--timeout", type=float, default=distributed.DEFAULT_TIMEOUT_S,
                        help="seconds a data-parallel rank waits for the others before it "
                             f"stops with an error ({distributed.DEFAULT_TIMEOUT_S:g})")


def run(args) -> int:
    for name, value in (("--epochs", args.epochs), ("--batch-size", args.batch_size),
                        ("--hidden", args.hidden)):
        if value < 1:
            raise CommandError(f"{name} must be at least 1, got {value}")
    check_seed(args.seed)
    check_learning_rate(args.lr)
    if args.nproc < 1:
        raise CommandError(f"--nproc must be at least 1, got {args.nproc}")
    if not 0 < args.timeout < float("inf"):
        raise CommandError(f"--timeout must be a positive number of seconds, got {args.timeout}")
    if args.nproc > 1:
        return launch_ranks(args)
    job = distributed.init_process_group(args.timeout) if distributed.launched() else None
    try:
        return run_training(args, job)
    finally:
        distributed.destroy_process_group()


def launch_ranks(args) -> int:
    """Check what can be checked once, then run ``--nproc`` ranks of this command."""
    if distributed.launched():
        raise CommandError(f"--nproc {args.nproc} starts ranks, but this process is rank "
                           f"{os.environ['RANK']} of a job started already (by torchrun); "
                           f"drop --nproc")
    check_output_path("--save", args.save)
    if args.plot not in (DEFAULT_PLOT, "none"):
        check_output_path("--plot", args.plot, PLOT_SUFFIXES)
    backend, device = resolve_target(args.backend, args.device)
    gpus = [name for name in backend.devices() if name.startswith("cuda")]
    if device.startswith("cuda") and args.nproc > len(gpus):
        raise CommandError(f"--nproc {args.nproc} on {device}: each rank takes a GPU of its own "
                           f"(rank r takes cuda:r), and {len(gpus)} are present")
    distributed.launch([sys.executable, "-m", "mnn", *rank_argv(args)], args.nproc)
    return 0


def rank_argv(args) -> list[str]:
    """The command line of one rank: ``train`` with these arguments, without ``--nproc``."""
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    argv = ["train"]
    for action in parser._actions:  # argparse keeps no public list of a parser's options
        value = getattr(args, action.dest, None)
        if not action.option_strings or action.dest in ("help", "nproc") or value is None:
            continue
        if action.nargs == 0:  # a flag
            argv += [action.option_strings[0]] if value else []
        else:
            argv += [action.option_strings[0], str(value)]
    return argv


def run_training(args, job: distributed.Job | None) -> int:
    """Train in this process: alone, or as one rank of a data-parallel ``job``."""
    main = job is None or job.is_main  # rank 0 prints, plots and saves
    say = print if main else _quiet
    check_output_path("--save", args.save)
    args.plot = plot_destination(args.plot, DEFAULT_PLOT, f"{args.dataset}-curves.png", say)
    backend, device = resolve_target(args.backend, args.device)
    if job is not None and job.device(device) != device:  # each rank on its own GPU
        backend, device = resolve_target(args.backend, job.device(device))
    limit_threads(backend, args.threads)
    train_host, test_host = load_dataset(args.dataset, args.data_dir, args.download)
    train = train_host.to(backend, device, args.dtype)  # once: batches are cut on the device
    test = test_host.to(backend, device, args.dtype)
    mnn.manual_seed(args.seed)
    n_in = int(np.prod(train_host.inputs.shape[1:]))
    model = mnn.SequentialLayers([mnn.LinearLayer(n_in, args.hidden), mnn.ReluLayer(),
                                  mnn.LinearLayer(args.hidden, N_CLASSES),
                                  mnn.CrossEntropyLossLayer()])
    model.input_grad = False  # the images need no gradient: skip that matrix product
    lr = args.lr if args.lr is not None else (0.1 if args.optimizer == "sgd" else 1e-3)
    optimizer = OPTIMIZERS[args.optimizer](model, lr=lr)
    if job is None:
        trainer = model
        batches = Batches(train, batch_size=args.batch_size, rng=args.seed)
        batch = f"batch {args.batch_size}"
    else:  # rank 0's weights everywhere, then each rank on its share of every batch
        trainer = distributed.DistributedDataParallel(model.to(backend.name, device, args.dtype))
        batches = DistributedBatches(train, batch_size=args.batch_size, rng=args.seed)
        batch = (f"batch {args.batch_size} per rank x {job.world_size} ranks "
                 f"({job.backend}, data-parallel)")
    test_labels = test_host.labels
    say(f"mnn {mnn.__version__}: {args.dataset} ({len(train)} train, {len(test)} test), "
        f"{n_in}-{args.hidden}-{N_CLASSES} on {backend.name} {device} {args.dtype}, "
        f"{optimizer!r}, {batch}, seed {args.seed}", flush=True)

    history = {"loss": [], "accuracy": []}
    start = time.perf_counter()
    for epoch in range(1, args.epochs + 1):
        bar = progress_bar(batches.samples_per_epoch, f"epoch {epoch}/{args.epochs}",
                           args.no_progress or not main)
        total, seen = 0.0, 0
        for inputs, labels in batches:
            optimizer.zero_grad(set_to_none=True)  # backward then stores, no zero pass
            loss = trainer(inputs, labels)
            trainer.backward()  # data-parallel: then the gradients' average over the ranks
            optimizer.step()
            n = int(labels.shape[0])
            total, seen = total + float(loss) * n, seen + n  # float(): waits for the device
            bar.update(n)
            bar.set_postfix(loss=f"{total / seen:.4f}", refresh=False)
        bar.close()
        if job is not None:  # the loss over every rank's samples
            total, seen = distributed.sum_across_ranks([total, seen])
        if not main:
            continue
        accuracy = float(np.mean(predictions(model, test) == test_labels))
        history["loss"].append(total / seen)
        history["accuracy"].append(accuracy)
        print(f"epoch {epoch}/{args.epochs}: train loss {total / seen:.4f}, "
              f"test accuracy {100 * accuracy:.2f}%", flush=True)
    backend.synchronize(backend.device(device))
    seconds = time.perf_counter() - start
    if not main:
        return 0
    correct = int(round(history["accuracy"][-1] * len(test)))
    epochs = f"{args.epochs} epoch" + ("s" if args.epochs != 1 else "")
    print(f"test accuracy {100 * history['accuracy'][-1]:.2f}% ({correct}/{len(test)}) after "
          f"{epochs} in {seconds:.1f} s on {backend.name} {device} {args.dtype}")
    if args.save:
        mnn.save(model, args.save, optimizer=optimizer)
        print(f"saved the model and optimizer to {args.save}")
    if args.plot:
        plot_curves(history, args.plot, f"{args.dataset}, {backend.name} {device}")
        print(f"wrote the curves to {args.plot}")
    return 0


def plot_curves(history: dict, path: str, title: str) -> None:
    """Training loss and test accuracy per epoch, side by side, as an image (by its suffix)."""
    plt = pyplot()
    epochs = np.arange(1, len(history["loss"]) + 1)
    figure, (left, right) = plt.subplots(1, 2, figsize=(9, 3.5))
    left.plot(epochs, history["loss"], marker="o")
    left.set(xlabel="epoch", ylabel="training loss (cross-entropy)", yscale="log")
    right.plot(epochs, 100 * np.asarray(history["accuracy"]), marker="o", color="C1")
    right.set(xlabel="epoch", ylabel="test accuracy (%)")
    for axes in (left, right):
        axes.grid(alpha=0.3)
    figure.suptitle(title)
    figure.tight_layout()
    save_figure(figure, path)


def _quiet(*args, **kwargs) -> None:
    """``print`` on ranks other than 0."""
