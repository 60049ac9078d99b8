"""``mnn train``: a Linear-ReLU-Linear network (``--model mlp``, the default) or a LeNet-style
convolutional network (``--model cnn``) with cross-entropy, on any backend and device.

One epoch = one shuffled pass over the training data in mini-batches. After
each epoch the network is scored on the held-out test data (never trained on),
and with ``--save`` the model and optimizer are written. The data are moved to
the device once. The loop itself (epochs, progress bar, checkpoints) is
``mnn.training``'s; this file holds the data, the model and what is printed.

Data-parallel: ``--nproc N`` starts N ranks of this command on this machine
(``mnn.distributed.launch``), and ``torchrun ... -m mnn train`` starts them on one
machine or several. Each rank trains on its share of every batch
(``--batch-size`` samples per rank) and the gradients are averaged after each
backward (``mnn.distributed``); rank 0 prints, plots and saves. See docs/distributed.md.
"""

from __future__ import annotations

import argparse
import math
import os
import sys

import numpy as np

import mnn
from mnn import distributed, training
from mnn.cli.common import (
    PLOT_SUFFIXES,
    CommandError,
    add_dataset_arguments,
    add_training_arguments,
    check_at_least_one,
    check_output_path,
    check_training_arguments,
    learning_rate,
    limit_threads,
    load_dataset,
    plot_destination,
    predictions,
    pyplot,
    resolve_target,
    save_figure,
    warn,
)
from mnn.data import Batches, Dataset, DistributedBatches

OPTIMIZERS = {"sgd": mnn.optim.SGD, "adam": mnn.optim.Adam, "adamw": mnn.optim.AdamW}
MODELS = ("mlp", "cnn")
N_CLASSES = 10
#: The channels of the CNN's two convolutions
CNN_CHANNELS = (16, 32)


DEFAULT_PLOT = "<dataset>-curves.png"


def add_arguments(parser) -> None:
    add_dataset_arguments(parser)
    parser.add_argument("--epochs", type=int, default=20, help="passes over the data (20)")
    parser.add_argument("--optimizer", default="adam", choices=sorted(OPTIMIZERS),
                        help="the update rule (default: %(default)s)")
    parser.add_argument("--model", default="mlp", choices=MODELS,
                        help="mlp: Linear-ReLU-Linear; cnn: Conv-ReLU-MaxPool twice, then "
                             "Flatten-Linear (LeNet-style, see docs/convolution.md) "
                             "(default: %(default)s)")
    parser.add_argument("--hidden", type=int, default=256,
                        help="hidden units of the mlp (256)")
    add_training_arguments(parser, DEFAULT_PLOT)
    parser.add_argument("--nproc", type=int, default=1,
                        help="processes that train data-parallel on this machine, each on "
                             "--batch-size samples a step (1: no torch.distributed; torchrun "
                             "... -m mnn train starts them across machines)")
    parser.add_argument("--timeout", type=float, default=distributed.DEFAULT_TIMEOUT_S,
                        help="seconds a data-parallel rank waits for the others before it "
                             f"stops with an error ({distributed.DEFAULT_TIMEOUT_S:g})")


def run(args) -> int:
    check_at_least_one(args, "epochs", "hidden")
    check_training_arguments(args)
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
    cores = usable_cores()
    if args.nproc > cores:
        warn(f"--nproc {args.nproc} starts more ranks than the {cores} core(s) this process may "
             f"run on (os.sched_getaffinity): the ranks share them, each step waits for the "
             f"slowest, and each rank holds torch, the data and the model in memory of its own")
    distributed.launch([sys.executable, "-m", "mnn", *rank_argv(args)], args.nproc)
    return 0


def usable_cores() -> int:
    """The cores this process may run on: its CPU affinity where the system has one (a
    container or ``taskset`` narrows it), else every core of the machine."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


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
    if args.model == "cnn":  # the flat pixels as images of one channel
        train_host, test_host = as_images(train_host), as_images(test_host)
    train = train_host.to(backend, device, args.dtype)  # once: batches are cut on the device
    test = test_host.to(backend, device, args.dtype)
    mnn.manual_seed(args.seed)
    n_in = int(np.prod(train_host.inputs.shape[1:]))
    if args.model == "cnn":
        model, shape = cnn(train_host.inputs.shape[-1])
    else:
        model = mnn.SequentialLayers([mnn.LinearLayer(n_in, args.hidden), mnn.ReluLayer(),
                                      mnn.LinearLayer(args.hidden, N_CLASSES),
                                      mnn.CrossEntropyLossLayer()])
        shape = f"{n_in}-{args.hidden}-{N_CLASSES}"
    model.input_grad = False  # the images need no gradient: skip that matrix product
    optimizer = OPTIMIZERS[args.optimizer](model, lr=learning_rate(args.lr, args.optimizer))
    if job is None:
        ddp = None
        batches = Batches(train, batch_size=args.batch_size, rng=args.seed)
        batch = f"batch {args.batch_size}"
    else:  # rank 0's weights everywhere, then each rank on its share of every batch
        ddp = distributed.DistributedDataParallel(model.to(backend.name, device, args.dtype))
        batches = DistributedBatches(train, batch_size=args.batch_size, rng=args.seed)
        batch = (f"batch {args.batch_size} per rank x {job.world_size} ranks "
                 f"({job.backend}, data-parallel)")
    test_labels = test_host.labels
    say(f"mnn {mnn.__version__}: {args.dataset} ({len(train)} train, {len(test)} test), "
        f"{shape} on {backend.name} {device} {args.dtype}, "
        f"{optimizer!r}, {batch}, seed {args.seed}", flush=True)

    history: dict[str, list[float]] = {"loss": [], "accuracy": []}

    def after_epoch(epoch: training.Round) -> None:
        """The training loss over every rank's samples, and the test accuracy (rank 0)."""
        total, seen = epoch.total, epoch.count
        if job is not None:
            total, seen = distributed.sum_across_ranks([total, seen])
        if not main:
            return
        accuracy = float(np.mean(predictions(model, test) == test_labels))
        history["loss"].append(total / seen)
        history["accuracy"].append(accuracy)
        print(f"epoch {epoch.number}/{args.epochs}: train loss {total / seen:.4f}, "
              f"test accuracy {100 * accuracy:.2f}%", flush=True)

    checkpoint = training.Checkpoint(args.save, model, optimizer) if args.save and main else None
    finished = training.train(training.plain_step(model, optimizer, through=ddp),
                              training.epochs(batches, args.epochs), after_epoch,
                              progress=main and not args.no_progress, checkpoint=checkpoint,
                              checkpoint_every=1)
    if not main:
        return 0
    correct = int(round(history["accuracy"][-1] * len(test)))
    epochs = f"{args.epochs} epoch" + ("s" if args.epochs != 1 else "")
    print(f"test accuracy {100 * history['accuracy'][-1]:.2f}% ({correct}/{len(test)}) after "
          f"{epochs} in {finished.seconds:.1f} s on {backend.name} {device} {args.dtype}")
    if args.save:
        print(f"saved the model and optimizer to {args.save}")
    if args.plot:
        plot_curves(history, args.plot, f"{args.dataset}, {backend.name} {device}")
        print(f"wrote the curves to {args.plot}")
    return 0


def as_images(dataset):
    """``dataset`` with each flat input of ``side * side`` pixels as a ``1 x side x side``
    image (NCHW, one channel), as the convolutions take it."""
    inputs, labels = dataset.to_host()
    side = math.isqrt(inputs.shape[1])
    if side * side != inputs.shape[1]:
        raise CommandError(f"--model cnn: expected square images, got {inputs.shape[1]} "
                           f"pixels per input in {dataset.name}")
    return Dataset(inputs.reshape(-1, 1, side, side), labels, dataset.name)


def cnn(side: int):
    """The LeNet-style network for ``side x side`` images, and its shape in words.

    Two Conv-ReLU-MaxPool stages, each convolution padded to keep the image's size,
    then one Linear layer to the classes. For images of 16 pixels a side or more
    (MNIST), the kernels are 5x5 and the 2x2 pools halve the image, as LeNet's
    (28 -> 14 -> 7 pixels a side). The 8x8 digits are too small to halve twice: there
    the kernels are 3x3 and the 2x2 pools slide by one pixel (8 -> 7 -> 6).
    """
    large = side >= 16
    kernel, pool_stride = (5, 2) if large else (3, 1)
    first, second = CNN_CHANNELS
    left = side
    for _ in range(2):
        left = (left - 2) // pool_stride + 1  # a 2x2 pool: Conv2d's Eq. (2), no padding
    model = mnn.SequentialLayers([
        mnn.Conv2d(1, first, kernel, padding=kernel // 2), mnn.ReluLayer(),
        mnn.MaxPool2d(2, stride=pool_stride),
        mnn.Conv2d(first, second, kernel, padding=kernel // 2), mnn.ReluLayer(),
        mnn.MaxPool2d(2, stride=pool_stride), mnn.Flatten(),
        mnn.LinearLayer(second * left * left, N_CLASSES), mnn.CrossEntropyLossLayer()])
    pool = f"pool2x2/{pool_stride}"
    shape = (f"cnn 1x{side}x{side}: conv{kernel}x{kernel}x{first}-{pool}-conv{kernel}x"
             f"{kernel}x{second}-{pool}-{N_CLASSES}")
    return model, shape


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
