"""Checkpoints: round trips on every target, torch float32 to NumPy and back, exact resume,
atomic writes, and a clear CheckpointError for every file that does not fit."""

import json
import os
import re
import subprocess
import sys
import textwrap
import warnings

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

import mnn
import mnn.checkpoint
import mnn.errors
import mnn.files
import mnn.registry
import mnn.serialization
from mnn.optim import SGD, Adam, AdamW


def classifier(seed=0):
    return mnn.SequentialLayers([mnn.LinearLayer(4, 6, rng=seed), mnn.ReluLayer(),
                                 mnn.LinearLayer(6, 3, rng=seed + 1),
                                 mnn.CrossEntropyLossLayer(3)])


def batches(n, seed=0, batch=8):
    rng = np.random.default_rng(seed)
    return [(rng.standard_normal((batch, 4)), rng.integers(0, 3, size=batch)) for _ in range(n)]


def train(net, opt, data, asarray=lambda a: a):
    for x, y in data:
        opt.zero_grad()
        net(asarray(x), asarray(y))
        net.backward()
        opt.step()


def at(path):
    """The start of an error message about the file ``path``, as a regular expression."""
    return re.escape(f"{path}: ")


def host_state(net):
    return {name: mnn.backends.for_array(v).to_host(v) for name, v in net.state_dict().items()}


def assert_same_state(got, expected):
    assert list(got) == list(expected)
    for name in expected:
        np.testing.assert_array_equal(got[name], expected[name], err_msg=name)
        assert got[name].dtype == expected[name].dtype, name


# --- round trips ------------------------------------------------------------------------

def test_round_trip_with_optimizer_on_every_target(target, tmp_path):
    net, path = classifier(), tmp_path / "model.safetensors"
    opt = AdamW(net, lr=0.01)

    def on_target(a):
        return target.asarray(a, "float32" if a.dtype.kind == "f" else None)

    train(net, opt, batches(3), on_target)
    mnn.save(net, path, optimizer=opt)
    model, loaded = mnn.load(path, with_optimizer=True)
    assert model.config() == net.config() and loaded.config() == opt.config()
    assert_same_state(model.state_dict(), host_state(net))  # host NumPy, float32 as stored
    for name, entries in opt.state.items():
        assert loaded.state[name]["step"] == entries["step"] == 3
        for entry in ("exp_avg", "exp_avg_sq"):
            np.testing.assert_array_equal(loaded.state[name][entry], target.to_host(entries[entry]))
    # Moved back to the target, the loaded pair continues exactly as the original does.
    model.to(xp=target.backend.name, device=target.device)
    more = batches(2, seed=1)
    train(net, opt, more, on_target)
    train(model, loaded, more, on_target)
    assert_same_state(host_state(model), host_state(net))


def test_torch_float32_checkpoint_loads_into_numpy_and_back(tmp_path, rng):
    torch = pytest.importorskip("torch", reason="saving from torch tensors needs torch")
    net, path = classifier(), tmp_path / "torch.safetensors"
    x, y = rng.standard_normal((5, 4)), rng.integers(0, 3, size=5)
    train(net, SGD(net, lr=0.1), [(x, y)], lambda a: torch.tensor(a, dtype=torch.float32)
          if a.dtype.kind == "f" else torch.tensor(a))
    logits = net[:3](torch.tensor(x, dtype=torch.float32))
    mnn.save(net, path)

    model = mnn.load(path)
    weights = model.state_dict()
    assert all(type(w) is np.ndarray and w.dtype == np.float32 for w in weights.values())
    for name, value in net.state_dict().items():
        np.testing.assert_array_equal(weights[name], value.numpy())
    np.testing.assert_allclose(model[:3](x.astype(np.float32)), logits.numpy(), rtol=1e-6,
                               atol=1e-6)
    model.to(xp="torch")
    back = model[:3](torch.tensor(x, dtype=torch.float32))
    assert back.dtype == torch.float32
    np.testing.assert_array_equal(back.numpy(), logits.numpy())


@pytest.mark.parametrize("optimizer, hyper", [
    (Adam, {"lr": 0.01}), (AdamW, {"lr": 0.01}),
    (SGD, {"lr": 0.1, "momentum": 0.9, "nesterov": True}), (SGD, {"lr": 0.1})],
    ids=["adam", "adamw", "sgd-nesterov", "sgd"])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_resume_is_exact(tmp_path, optimizer, hyper, dtype):
    """5 steps, save, load, 5 more: bitwise the same weights as 10 straight steps."""
    data = [(x.astype(dtype), y) for x, y in batches(10)]
    straight = classifier()
    train(straight, optimizer(straight, **hyper), data)

    first = classifier()
    opt = optimizer(first, **hyper)
    train(first, opt, data[:5])
    mnn.save(first, tmp_path / "resume.safetensors", optimizer=opt)
    del first, opt
    model, opt = mnn.load(tmp_path / "resume.safetensors", with_optimizer=True)
    assert type(opt) is optimizer and opt.model is model
    train(model, opt, data[5:])
    assert_same_state(model.state_dict(), straight.state_dict())


def test_a_bare_layer_round_trips(tmp_path):
    layer = mnn.LinearLayer(3, 2, bias=False, init="glorot", rng=4)
    mnn.save(layer, str(tmp_path / "linear.safetensors"))
    loaded = mnn.load(str(tmp_path / "linear.safetensors"))
    assert type(loaded) is mnn.LinearLayer and loaded.config() == layer.config()
    assert_same_state(loaded.state_dict(), layer.state_dict())


def test_file_is_plain_safetensors_with_json_metadata(tmp_path):
    net, path = classifier(), tmp_path / "plain.safetensors"
    opt = Adam(net)
    train(net, opt, batches(1))
    mnn.save(net, path, optimizer=opt)
    data = path.read_bytes()
    header_length = int.from_bytes(data[:8], "little")
    header = json.loads(data[8:8 + header_length])  # a JSON header and raw bytes: no pickle
    metadata = header.pop("__metadata__")
    assert metadata["mnn.format_version"] == "1" and metadata["mnn.version"] == mnn.__version__
    assert json.loads(metadata["mnn.model"]) == json.loads(json.dumps(net.config()))
    assert json.loads(metadata["mnn.optimizer"]) == {
        "type": "Adam", "args": {"lr": 0.001, "betas": [0.9, 0.999], "eps": 1e-8,
                                 "weight_decay": 0.0},
        "scalars": {name: {"step": 1} for name in ("0.w", "0.b", "2.w", "2.b")}}
    tensors = load_file(path)  # any safetensors reader sees the weights under their names
    assert sorted(tensors) == sorted([*net.state_dict()] + [
        f"optimizer/{n}/{e}" for n in net.state_dict() for e in ("exp_avg", "exp_avg_sq")])
    np.testing.assert_array_equal(tensors["2.w"], net.state_dict()["2.w"])


def test_save_refuses_an_optimizer_of_another_model(tmp_path):
    with pytest.raises(ValueError, match=r"mnn.save: the optimizer Adam\(.*\) updates another "
                                         r"model than the one being saved"):
        mnn.save(classifier(), tmp_path / "x.safetensors", optimizer=Adam(classifier()))
    assert os.listdir(tmp_path) == []


# --- atomic writes ----------------------------------------------------------------------

@pytest.fixture
def old_checkpoint(tmp_path):
    path = tmp_path / "model.safetensors"
    mnn.save(classifier(seed=7), path)
    return path, path.read_bytes()


@pytest.mark.parametrize("error", [OSError("No space left on device"), KeyboardInterrupt()],
                         ids=["disk-full", "interrupt"])
def test_a_write_that_fails_midway_leaves_the_old_file(old_checkpoint, monkeypatch, error):
    path, before = old_checkpoint
    written = []

    def write_half_then_fail(file, data):
        file.write(data[:len(data) // 2])
        file.flush()
        written.append(os.path.getsize(file.name))
        raise error

    monkeypatch.setattr(mnn.files, "write_all", write_half_then_fail)
    with pytest.raises(type(error)):
        mnn.save(classifier(seed=8), path)
    assert written and written[0] > 0  # the temporary file really had bytes in it
    assert path.read_bytes() == before
    assert os.listdir(path.parent) == [path.name]  # no temporary file left behind


def test_a_failing_fsync_leaves_the_old_file(old_checkpoint, monkeypatch):
    path, before = old_checkpoint

    def fail(descriptor):
        raise OSError("Input/output error")

    monkeypatch.setattr(os, "fsync", fail)
    with pytest.raises(OSError, match="Input/output error"):
        mnn.save(classifier(seed=8), path)
    assert path.read_bytes() == before
    assert os.listdir(path.parent) == [path.name]


class Unstorable(mnn.BaseLayer):
    def __init__(self, values=frozenset({1, 2})):
        super().__init__()
        self.values = values  # a set: not JSON


def test_unserialisable_metadata_leaves_the_old_file(old_checkpoint):
    path, before = old_checkpoint
    with pytest.raises(mnn.CheckpointError, match=r"mnn.save: the model's config\(\) cannot be "
                                                  r"stored as JSON: .*set"):
        mnn.save(Unstorable(), path)
    assert path.read_bytes() == before
    assert os.listdir(path.parent) == [path.name]


def test_a_successful_save_replaces_the_file_with_the_usual_permissions(old_checkpoint):
    path, before = old_checkpoint
    old_umask = os.umask(0o022)
    try:
        mnn.save(classifier(seed=8), path)
    finally:
        os.umask(old_umask)
    assert path.read_bytes() != before
    assert os.listdir(path.parent) == [path.name]
    if os.name == "posix":
        assert path.stat().st_mode & 0o777 == 0o644
    assert_same_state(mnn.load(path).state_dict(), classifier(seed=8).state_dict())


# --- files that do not fit --------------------------------------------------------------

def test_truncated_files(old_checkpoint):
    path, data = old_checkpoint
    for size in (len(data) - 10, len(data) // 2, 12, 3, 0):
        path.write_bytes(data[:size])
        with pytest.raises(mnn.CheckpointError, match=rf"^{at(path)}not a readable safetensors "
                                                      rf"file \(corrupt or truncated\?\): "):
            mnn.load(path)


def test_missing_files_and_directories(tmp_path):
    """A missing file is an mnn error (the API's callers catch MnnError) and still the
    FileNotFoundError that Python's convention expects."""
    for caught in (FileNotFoundError, mnn.MnnError, mnn.CheckpointError):
        with pytest.raises(caught, match=rf"^{at(tmp_path / 'absent')}no such checkpoint file"):
            mnn.load(tmp_path / "absent")
    with pytest.raises(mnn.CheckpointError, match=rf"^{at(tmp_path)}a directory, not a "
                                                  r"checkpoint file"):
        mnn.load(tmp_path)


def test_random_garbage(tmp_path):
    path = tmp_path / "garbage.safetensors"
    path.write_bytes(np.random.default_rng(0).bytes(1000))
    with pytest.raises(mnn.CheckpointError, match=rf"^{at(path)}not a readable safetensors file"):
        mnn.load(path)


def test_safetensors_without_mnn_metadata(tmp_path):
    path = tmp_path / "foreign.safetensors"
    save_file({"weight": np.zeros((2, 2))}, path, metadata={"format": "pt"})
    with pytest.raises(mnn.CheckpointError, match=rf"^{at(path)}a safetensors file, but not an mnn "
                                                  r"checkpoint: its metadata has no "
                                                  r"'mnn.format_version' \(it has \['format'\]\); "
                                                  r"was it written by mnn.save\?"):
        mnn.load(path)


def rewrite(path, tensors=None, **metadata_changes):
    """Save ``path`` again with some tensors or metadata entries replaced (None removes)."""
    from safetensors import safe_open

    with safe_open(str(path), framework="numpy") as file:
        metadata = file.metadata()
        old = {key: file.get_tensor(key) for key in file.keys()}
    metadata.update(metadata_changes)
    metadata = {k: v for k, v in metadata.items() if v is not None}
    save_file(old if tensors is None else tensors(old), path, metadata=metadata)


def test_weights_that_do_not_match_the_config(old_checkpoint):
    path, _ = old_checkpoint
    bigger = mnn.SequentialLayers([mnn.LinearLayer(4, 8), mnn.ReluLayer(), mnn.LinearLayer(8, 3),
                                   mnn.LinearLayer(3, 3), mnn.CrossEntropyLossLayer(3)])

    def change(tensors):
        tensors["9.w"] = tensors.pop("2.b")
        return tensors

    rewrite(path, change, **{"mnn.model": json.dumps(bigger.config())})
    with pytest.raises(mnn.CheckpointError) as info:
        mnn.load(path)
    text = str(info.value)
    assert text.startswith(f"{path}: SequentialLayers: the state dict does not fit the model "
                           f"(7 problems):")
    for line in ["missing key '2.b'", "missing key '3.w'", "missing key '3.b'",
                 "unexpected key '9.w'",
                 "shape mismatch for '0.b': the checkpoint has (6,), the model (8,)",
                 "shape mismatch for '0.w': the checkpoint has (6, 4), the model (8, 4)",
                 "shape mismatch for '2.w': the checkpoint has (3, 6), the model (3, 8)"]:
        assert f"\n  {line}" in text


@pytest.mark.parametrize("metadata, message", [
    ({"mnn.format_version": "2"}, r"checkpoint format version '2', but this mnn reads version 1 "
                                  r"\(the file says it was written by mnn 0"),
    ({"mnn.model": None}, r"the metadata has no 'mnn.model'"),
    ({"mnn.model": "{not json"}, r"'mnn.model' in the metadata is not valid JSON"),
    ({"mnn.model": '{"type": "LinearLayer", "args": {"in_features": 4}}'},
     r"build: cannot construct LinearLayer from the arguments \{'in_features': 4\}"),
    ({"mnn.model": '{"type": "LinearLayer", "args": {"in_features": 4, "out_features": 6, '
                   '"init": "zeros"}}'}, r"expected init='he' or init='glorot', got 'zeros'"),
])
def test_bad_metadata(old_checkpoint, metadata, message):
    path, _ = old_checkpoint
    rewrite(path, **metadata)
    with pytest.raises(mnn.CheckpointError, match=rf"^{at(path)}.*{message}"):
        mnn.load(path)


def test_loading_never_runs_code_from_the_file(old_checkpoint):
    path, _ = old_checkpoint
    marker = path.parent / "pwned"
    command = {"type": "os.system", "args": {"command": f"touch {marker}"}}
    rewrite(path, **{"mnn.model": json.dumps(command)})
    with pytest.raises(mnn.CheckpointError, match=rf"^{at(path)}build: unknown layer type "
                                                  r"'os.system'; known layer types: .*LinearLayer"):
        mnn.load(path)
    nested = {"type": "SequentialLayers", "args": {"layers": [command]}}
    rewrite(path, **{"mnn.model": json.dumps(nested)})
    with pytest.raises(mnn.CheckpointError, match=r"unknown layer type 'os.system'"):
        mnn.load(path)
    assert not marker.exists()


def test_optimizer_records_that_do_not_fit(tmp_path):
    net, path = classifier(), tmp_path / "opt.safetensors"
    opt = Adam(net)
    train(net, opt, batches(1))
    mnn.save(net, path)
    with pytest.raises(mnn.CheckpointError, match=rf"^{at(path)}the checkpoint holds no optimizer"):
        mnn.load(path, with_optimizer=True)

    mnn.save(net, path, optimizer=opt)
    record = {"type": "os.system", "args": {}, "scalars": {}}
    rewrite(path, **{"mnn.optimizer": json.dumps(record)})
    with pytest.raises(mnn.CheckpointError, match=rf"^{at(path)}build: unknown optimizer type "
                                                  r"'os.system'; known optimizer types: Adam, "
                                                  r"AdamW, SGD"):
        mnn.load(path, with_optimizer=True)
    assert isinstance(mnn.load(path), mnn.SequentialLayers)  # the model alone still loads

    mnn.save(net, path, optimizer=opt)
    rewrite(path, **{"mnn.optimizer": json.dumps([1, 2])})
    with pytest.raises(mnn.CheckpointError, match=r"'mnn.optimizer' in the metadata is not an "
                                                  r"optimizer record"):
        mnn.load(path, with_optimizer=True)

    mnn.save(net, path, optimizer=opt)

    def change(tensors):
        tensors["optimizer/0.w/exp_avg"] = np.zeros((1, 2), np.float32)
        tensors["optimizer/7.w/exp_avg"] = np.zeros(3, np.float32)
        del tensors["optimizer/2.b/exp_avg_sq"]
        return tensors

    rewrite(path, change)
    with pytest.raises(mnn.CheckpointError) as info:
        mnn.load(path, with_optimizer=True)
    text = str(info.value)
    assert text.startswith(f"{path}: Adam: the state dict does not fit the optimizer and its "
                           f"model (3 problems):")
    for line in ["shape mismatch for '0.w' 'exp_avg': the state has (1, 2), the parameter (6, 4)",
                 "state for '7.w', which is not a parameter of the model",
                 "missing state 'exp_avg_sq' for '2.b'"]:
        assert f"\n  {line}" in text


# --- hostile and odd files: a CheckpointError, quickly, before anything big is allocated ------

def raw_safetensors(path, tensors: dict, metadata: dict) -> None:
    """A safetensors file written byte by byte: ``tensors`` maps a name to (dtype name, shape)
    and gets zero bytes of the right size, so dtypes NumPy lacks (BF16) can be written. The
    zeros are a hole in a sparse file (``truncate``): a 3 GB file takes no disk space."""
    sizes = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8}
    header, offset = {"__metadata__": metadata}, 0
    for name, (dtype, shape) in tensors.items():
        size = sizes[dtype] * int(np.prod(shape, dtype=np.int64))
        header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [offset,
                                                                              offset + size]}
        offset += size
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    path.write_bytes(len(text).to_bytes(8, "little") + text)
    os.truncate(path, 8 + len(text) + offset)


def mnn_metadata(model_config) -> dict:
    text = model_config if isinstance(model_config, str) else json.dumps(model_config)
    return {"mnn.format_version": "1", "mnn.version": mnn.__version__, "mnn.model": text}


def load_tracing_memory(path, **kwargs):
    """``mnn.load(path)`` and the peak bytes Python and NumPy allocated while it ran."""
    import tracemalloc

    tracemalloc.start()
    try:
        try:
            result = mnn.load(path, **kwargs)
        except mnn.CheckpointError as error:
            result = error
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    return result, peak


def test_a_tiny_file_that_asks_for_a_huge_layer_allocates_nothing_big(tmp_path):
    """LinearLayer(20000, 20000) would take 3.2 GB in float64: the 1 KB file must not cost that."""
    path = tmp_path / "huge.safetensors"
    config = {"type": "LinearLayer", "args": {"in_features": 20000, "out_features": 20000,
                                              "bias": True, "init": "he"}}
    raw_safetensors(path, {"w": ("F64", (2, 2)), "b": ("F64", (2,))}, mnn_metadata(config))
    assert path.stat().st_size < 1024
    error, peak = load_tracing_memory(path)
    assert isinstance(error, mnn.CheckpointError)
    assert "shape mismatch for 'w': the checkpoint has (2, 2), the model (20000, 20000)" in str(
        error)
    assert peak < 16 * 2**20, f"loading allocated {peak / 2**20:.0f} MiB"
    raw_safetensors(path, {}, mnn_metadata(config))  # no tensors at all: the same
    error, peak = load_tracing_memory(path)
    assert "missing key 'w'" in str(error) and peak < 16 * 2**20


def test_a_tiny_file_that_asks_for_a_layer_larger_than_the_machine(tmp_path):
    """Whether the constructor refuses the size or the shapes misfit, the error is about the
    layer: not a file too big for memory (the file has 368 bytes)."""
    path = tmp_path / "huger.safetensors"
    config = {"type": "LinearLayer", "args": {"in_features": 10**6, "out_features": 10**6}}
    raw_safetensors(path, {"w": ("F64", (2, 2)), "b": ("F64", (2,))}, mnn_metadata(config))
    error, peak = load_tracing_memory(path)
    assert isinstance(error, mnn.CheckpointError), error
    assert str(error).startswith(f"{path}: ") and "(1000000, 1000000)" in str(error)
    assert "more than this process can hold" not in str(error) and peak < 16 * 2**20


@pytest.mark.parametrize("dtype", ["BF16", "I64"])
def test_a_tensor_of_a_dtype_mnn_does_not_keep(tmp_path, dtype):
    path = tmp_path / "odd.safetensors"
    config = mnn.LinearLayer(3, 2, bias=False).config()
    raw_safetensors(path, {"w": (dtype, (2, 3))}, mnn_metadata(config))
    with pytest.raises(mnn.CheckpointError, match=rf"^{at(path)}tensor 'w' has dtype {dtype}; "
                                                  r"mnn stores F64, F32, F16"):
        mnn.load(path)


@pytest.mark.parametrize("depth", [100, 100_000])
def test_a_config_nested_too_deep(tmp_path, depth):
    path = tmp_path / "deep.safetensors"
    text = '{"type": "SequentialLayers", "args": {"layers": [' * depth + "]}}" * depth
    raw_safetensors(path, {}, mnn_metadata(text))
    with pytest.raises(mnn.CheckpointError, match=rf"^{at(path)}.*nested (more than 64|too) deep"):
        mnn.load(path)


@pytest.mark.parametrize("config, message", [
    ({"type": "LinearLayer", "args": {"in_features": 0, "out_features": 3}},
     r"LinearLayer: expected in_features to be a positive int, got 0"),
    ({"type": "SoftmaxLayer", "args": {"axis": "a"}},
     r"SoftmaxLayer: expected axis to be an int, got 'a'"),
    ({"type": "LogSoftmaxLayer", "args": {"sample_shape": 5}},
     r"LogSoftmaxLayer: expected sample_shape to be a tuple of positive ints, got 5"),
])
def test_constructor_arguments_a_layer_refuses(tmp_path, config, message):
    path = tmp_path / "args.safetensors"
    raw_safetensors(path, {}, mnn_metadata(config))
    with pytest.raises(mnn.CheckpointError, match=rf"^{at(path)}build: cannot construct .*"
                                                  + message):
        mnn.load(path)


def test_a_fifo_and_dev_null_are_refused_without_blocking(tmp_path):
    import threading

    fifo = tmp_path / "pipe.safetensors"
    os.mkfifo(fifo)
    outcomes = {}

    def load(path):
        try:
            mnn.load(path)
        except mnn.CheckpointError as error:
            outcomes[path] = str(error)

    for path in (fifo, "/dev/null"):
        thread = threading.Thread(target=load, args=(path,), daemon=True)
        thread.start()
        thread.join(timeout=30)  # a FIFO opened for reading would block here forever
        assert not thread.is_alive(), f"mnn.load({path}) blocked"
        assert re.match(rf"^{at(path)}not a regular file", outcomes[path])


def test_optimizer_state_with_a_negative_step(tmp_path):
    net, path = classifier(), tmp_path / "adam.safetensors"
    opt = Adam(net)
    train(net, opt, batches(2))
    mnn.save(net, path, optimizer=opt)
    record = json.loads(rewrite_metadata(path)["mnn.optimizer"])
    for entries in record["scalars"].values():
        entries["step"] = -5
    rewrite(path, **{"mnn.optimizer": json.dumps(record)})
    with pytest.raises(mnn.CheckpointError, match=r"state 'step' for '0.w' counts steps and must "
                                                  r"be at least 1, got -5"):
        mnn.load(path, with_optimizer=True)


def rewrite_metadata(path):
    from safetensors import safe_open

    with safe_open(str(path), framework="numpy") as file:
        return file.metadata()


def test_the_same_model_saves_to_the_same_bytes(tmp_path):
    net = classifier()
    opt = Adam(net)
    train(net, opt, batches(2))
    saved = []
    for i in range(8):  # safetensors writes its header in hash order: it varied between calls
        mnn.save(net, tmp_path / f"{i}.safetensors", optimizer=opt)
        saved.append((tmp_path / f"{i}.safetensors").read_bytes())
    assert len(set(saved)) == 1
    assert_same_state(host_state(mnn.load(tmp_path / "0.safetensors")), host_state(net))


def test_a_save_killed_by_sigkill_leaves_a_temporary_file_that_the_next_save_removes(tmp_path):
    import signal

    path = tmp_path / "model.safetensors"
    mnn.save(classifier(seed=1), path)
    killed = textwrap.dedent(f"""
        import os, signal
        import mnn, mnn.files
        def write_half_then_die(file, data):
            file.write(data[:len(data) // 2])
            file.flush()
            os.kill(os.getpid(), signal.SIGKILL)
        mnn.files.write_all = write_half_then_die
        mnn.save(mnn.LinearLayer(4, 6, rng=2), {str(path)!r})
    """)
    result = subprocess.run([sys.executable, "-c", killed], capture_output=True)
    assert result.returncode == -signal.SIGKILL
    left = [name for name in os.listdir(tmp_path) if name != path.name]
    assert len(left) == 1 and left[0].startswith(f".{path.name}.") and left[0].endswith(".tmp")
    assert_same_state(host_state(mnn.load(path)), host_state(classifier(seed=1)))  # untouched
    mnn.save(classifier(seed=3), path)
    assert os.listdir(tmp_path) == [path.name]


def test_a_layer_registered_through_an_entry_point_is_rebuilt(tmp_path, monkeypatch):
    """A package declares its layer in the group mnn.layers; mnn.load imports it by that
    declaration when a checkpoint names the type, and no sooner."""

    module = "mnn_fake_layers_package"
    (tmp_path / f"{module}.py").write_text(textwrap.dedent("""
        import mnn

        class Doubler(mnn.BaseLayer):
            def compute_forward(self, xp, inputs, feedbacks):
                return 2 * inputs

            def compute_backward(self, xp, gradients):
                return 2 * gradients
    """))
    info = tmp_path / f"{module}-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {module}\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(f"[mnn.layers]\nDoubler = {module}:Doubler\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, module, raising=False)
    monkeypatch.setattr(mnn.registry.LAYERS, "_classes", dict(mnn.registry.LAYERS._classes))
    path = tmp_path / "net.safetensors"
    config = {"type": "SequentialLayers", "args": {"layers": [
        mnn.LinearLayer(2, 2).config(), {"type": "Doubler", "args": {}}]}}
    raw_safetensors(path, {"0.w": ("F64", (2, 2)), "0.b": ("F64", (2,))}, mnn_metadata(config))
    assert module not in sys.modules
    net = mnn.load(path)
    assert type(net[1]).__name__ == "Doubler" and module in sys.modules
    np.testing.assert_array_equal(net.predict(np.ones((1, 2))), np.zeros((1, 2)))


class Scaled(mnn.BaseLayer):
    """``y = a x`` with a 0-d parameter ``a``: a shape of ``()`` round-trips too."""

    def __init__(self, a=2.0):
        super().__init__()
        self.a = a
        self.add_param("a", np.full((), a))

    def compute_forward(self, xp, inputs, feedbacks):
        return self.params["a"] * inputs


def test_a_0d_parameter_round_trips(tmp_path, target):
    """It came back as shape (1,) (np.ascontiguousarray makes 0-d arrays 1-d), and load refused."""
    net = mnn.SequentialLayers([Scaled(3.0)])
    net(target.asarray(np.ones(2)))  # the parameter moves to the target
    mnn.save(net, tmp_path / "scaled.safetensors")
    loaded = mnn.load(tmp_path / "scaled.safetensors")
    assert loaded.state_dict()["0.a"].shape == () and float(loaded.state_dict()["0.a"]) == 3.0


# --- NaN and inf, the size of the whole structure, memory, long messages ----------------------

def test_nan_or_inf_weights_are_refused_in_one_line_unless_allowed(old_checkpoint):
    path, _ = old_checkpoint

    def poison(tensors):
        tensors["2.w"][1, 3] = np.nan
        tensors["0.b"][[0, 2]] = [np.inf, -np.inf]
        return tensors

    rewrite(path, poison)
    with pytest.raises(mnn.CheckpointError) as info:
        mnn.load(path)
    assert str(info.value) == (
        f"{path}: NaN or inf in 2 tensors; '0.b' holds 0 NaN and 2 inf of its 6 values; "
        f"'2.w' holds 1 NaN and 0 inf of its 18 values; a model with them computes NaN, so "
        f"load refuses it (mnn.load(path, allow_nonfinite=True) loads it anyway)")
    weights = mnn.load(path, allow_nonfinite=True).state_dict()  # to look at a diverged run
    assert np.isnan(weights["2.w"][1, 3]) and np.isposinf(weights["0.b"][0])


def test_nan_in_the_optimizer_state_is_refused_with_the_optimizer(tmp_path):
    net, path = classifier(), tmp_path / "adam.safetensors"
    opt = Adam(net)
    train(net, opt, batches(1))
    mnn.save(net, path, optimizer=opt)

    def poison(tensors):
        tensors["optimizer/0.w/exp_avg_sq"][0, 0] = np.nan
        return tensors

    rewrite(path, poison)
    with pytest.raises(mnn.CheckpointError, match=rf"^{at(path)}NaN or inf in 1 tensor; "
                                                  r"'optimizer/0.w/exp_avg_sq' holds 1 NaN"):
        mnn.load(path, with_optimizer=True)
    assert_same_state(mnn.load(path).state_dict(), net.state_dict())  # the model alone is fine
    _, loaded = mnn.load(path, with_optimizer=True, allow_nonfinite=True)
    assert np.isnan(loaded.state["0.w"]["exp_avg_sq"][0, 0])


def test_mnn_evaluate_refuses_a_digits_checkpoint_with_one_nan_weight(tmp_path, monkeypatch,
                                                                      capsys):
    """It printed "accuracy 10.58%" and exited 0."""
    from mnn.cli import main

    monkeypatch.chdir(tmp_path)
    path = tmp_path / "digits.safetensors"
    mnn.save(mnn.SequentialLayers([mnn.LinearLayer(64, 10, rng=0),
                                   mnn.CrossEntropyLossLayer(10)]), path)
    assert main(["evaluate", str(path), "--dataset", "digits"]) == 0  # the finite file loads
    assert "accuracy" in capsys.readouterr().out

    def poison(tensors):
        tensors["0.w"][3, 5] = np.nan
        return tensors

    rewrite(path, poison)
    with pytest.raises(SystemExit) as exit:
        main(["evaluate", str(path), "--dataset", "digits"])
    out, err = capsys.readouterr()
    assert exit.value.code == 1 and "accuracy" not in out
    assert err == (f"mnn: error: {path}: NaN or inf in 1 tensor; '0.w' holds 1 NaN and 0 inf "
                   f"of its 640 values; a model with them computes NaN, so load refuses it "
                   f"(mnn.load(path, allow_nonfinite=True) loads it anyway)\n")


def small_gpt(layers=1):
    return mnn.GPT(vocab_size=23, context=8, d_model=4, heads=2, layers=layers, hidden=6, rng=0)


def gpt_file(path, layers):
    """A file with the tensors of a one-block GPT and a config that asks for ``layers``."""
    config = small_gpt().config()
    config["args"]["layers"] = layers
    raw_safetensors(path, {name: ("F64", value.shape)
                           for name, value in small_gpt().state_dict().items()},
                    mnn_metadata(config))


linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"),
                                reason="RLIMIT_AS bounds a process's address space on Linux only")


def load_with_limited_memory(path, address_space: int) -> dict:
    """``mnn.load(path)`` in a new process whose address space is limited (so that a load
    without bounds ends there, not in this machine's memory): the CheckpointError's
    message, the seconds the load took, and the peak bytes that a second load allocated
    (traced apart: tracemalloc slows every allocation)."""
    code = textwrap.dedent(f"""
        import json, resource, time, tracemalloc
        import mnn
        resource.setrlimit(resource.RLIMIT_AS, ({address_space}, {address_space}))
        start = time.perf_counter()
        try:
            mnn.load({str(path)!r})
        except mnn.CheckpointError as error:
            seconds = time.perf_counter() - start
            tracemalloc.start()
            try:
                mnn.load({str(path)!r})
            except mnn.CheckpointError:
                peak = tracemalloc.get_traced_memory()[1]
            print(json.dumps({{"error": str(error), "seconds": seconds, "peak": peak}}))
    """)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0 and result.stdout, result.stderr[-3000:]
    return json.loads(result.stdout)


@linux_only
def test_a_small_file_that_asks_for_a_billion_blocks_is_refused_quickly(tmp_path):
    """It built 34 KB of placeholder blocks per layer, without bound, before any shape was
    checked: 10^4 layers took 6 s and 336 MB, 10^9 ended in a MemoryError."""
    path = tmp_path / "gpt.safetensors"
    gpt_file(path, 10**9)
    assert path.stat().st_size < 32 * 1024
    loaded = load_with_limited_memory(path, 2**30)
    assert loaded["error"].startswith(f"{path}: build: cannot construct GPT from the arguments ")
    assert (f"build: the config creates more than {mnn.serialization.MAX_LAYERS} layers "
            f"(sublayers included; the next one was a ") in loaded["error"]
    assert loaded["seconds"] < 2, f"refusing took {loaded['seconds']:.1f} s"
    assert loaded["peak"] < 64 * 2**20, f"refusing allocated {loaded['peak'] / 2**20:.0f} MiB"


def test_a_model_of_the_largest_size_builds(tmp_path):
    """The bound counts every layer the config creates, and a model of MAX_LAYERS fits."""
    layers = [mnn.ReluLayer() for _ in range(mnn.serialization.MAX_LAYERS - 1)]
    config = mnn.SequentialLayers(layers).config()
    assert len(mnn.serialization.build(config).named_layers()) == mnn.serialization.MAX_LAYERS
    config["args"]["layers"].append(config["args"]["layers"][0])
    with pytest.raises(mnn.CheckpointError, match=r"^build: cannot construct SequentialLayers "
                                                  r".*more than 10000 layers .*SequentialLayers"):
        mnn.serialization.build(config)


def test_many_problems_make_a_message_of_a_few_lines(tmp_path):
    """A 300-block config over a one-block file: thousands of missing keys. The message
    was 794 KB for 1000 blocks; it counts them all and lists a few."""
    from mnn.errors import MAX_LISTED
    from mnn.initializers import skip_init

    path = tmp_path / "gpt.safetensors"
    gpt_file(path, 300)
    with skip_init():
        missing = len(small_gpt(300).state_dict()) - len(small_gpt().state_dict())
    with pytest.raises(mnn.CheckpointError) as info:
        mnn.load(path)
    lines = str(info.value).splitlines()
    assert lines[0] == (f"{path}: GPT: the state dict does not fit the model "
                        f"({missing} problems):")
    assert len(lines) == 1 + MAX_LISTED + 1
    assert all(line.startswith("  missing key 'blocks.") for line in lines[1:-1])
    assert lines[-1] == f"  ... and {missing - MAX_LISTED} more"


def test_one_problem_is_one_problem():
    with pytest.raises(mnn.CheckpointError, match=r"^LinearLayer: the state dict does not fit "
                                                  r"the model \(1 problem\):\n  missing key 'b'$"):
        mnn.LinearLayer(3, 2).load_weights({"w": np.zeros((2, 3))})
    layer = mnn.LinearLayer(3, 2)
    with pytest.raises(mnn.CheckpointError, match=r"^LinearLayer: the checkpoint's config does "
                                                  r"not match the model \(1 difference\):\n  "
                                                  r"config\['args'\]\['init'\]: the checkpoint "
                                                  r"has 'glorot', the model 'he'$"):
        layer.load_weights(layer.state_dict(), {"type": "LinearLayer", "args": {
            "in_features": 3, "out_features": 2, "init": "glorot"}})
    net = mnn.SequentialLayers([layer])  # not "1 entries"
    longer = mnn.SequentialLayers([mnn.LinearLayer(3, 2), mnn.ReluLayer()]).config()
    with pytest.raises(mnn.CheckpointError, match=r"\(1 difference\):\n  config\['args'\]"
                                                  r"\['layers'\]: the checkpoint's list has "
                                                  r"length 2, the model's 1$"):
        net.load_weights(net.state_dict(), longer)


def test_many_config_differences_make_a_message_of_a_few_lines():
    from mnn.errors import MAX_LISTED

    model = mnn.SequentialLayers([mnn.LinearLayer(2, 2) for _ in range(40)])
    other = mnn.SequentialLayers([mnn.LinearLayer(2, 2, init="glorot") for _ in range(40)])
    with pytest.raises(mnn.CheckpointError) as info:
        model.load_weights(model.state_dict(), other.config())
    lines = str(info.value).splitlines()
    assert lines[0] == ("SequentialLayers: the checkpoint's config does not match the model "
                        "(40 differences):")
    assert lines[1] == ("  config['args']['layers'][0]['args']['init']: the checkpoint has "
                        "'glorot', the model 'he'")
    assert len(lines) == 1 + MAX_LISTED + 1 and lines[-1] == f"  ... and {40 - MAX_LISTED} more"


@linux_only
def test_a_checkpoint_bigger_than_the_memory_limit_is_a_checkpoint_error(tmp_path):
    """A consistent 3.2 GB file under a 2 GB address-space limit raised a raw MemoryError."""
    from mnn.initializers import skip_init

    path = tmp_path / "huge.safetensors"
    with skip_init():  # the config of a 6.4 GB layer, without its parameters
        config = mnn.LinearLayer(20000, 40000).config()
    raw_safetensors(path, {"w": ("F32", (40000, 20000)), "b": ("F32", (40000,))},
                    mnn_metadata(config))
    size = path.stat().st_size
    if path.stat().st_blocks * 512 > 2**20:
        pytest.skip(f"the file system of {tmp_path} stores no sparse files (the test wrote "
                    f"{path.stat().st_blocks * 512} bytes to disk)")
    loaded = load_with_limited_memory(path, 2 * 2**30)
    assert loaded["error"] == (f"{path}: a checkpoint of 3.0 GiB ({size} bytes) is more than "
                               f"this process can hold in memory")


# --- layer types that a loading process may not know ---------------------------------------

@pytest.fixture
def own_registry(monkeypatch):
    """The layer registry as it is, restored after the test: the test's classes leave it."""
    monkeypatch.setattr(mnn.registry.LAYERS, "_classes", dict(mnn.registry.LAYERS._classes))


def test_save_warns_about_a_layer_type_defined_inside_a_function(tmp_path, own_registry):
    class Halver(mnn.BaseLayer):
        def compute_forward(self, xp, inputs, feedbacks):
            return inputs / 2

    net, path = mnn.SequentialLayers([mnn.LinearLayer(2, 2), Halver()]), tmp_path / "net.st"
    with pytest.warns(mnn.errors.CheckpointWarning) as record:
        mnn.save(net, path)
    assert len(record) == 1 and record[0].filename == __file__  # it points at the save
    assert str(record[0].message) == (
        f"mnn.save: {path}: the layer type Halver ({__name__}.test_save_warns_about_a_layer_"
        f"type_defined_inside_a_function.<locals>.Halver) is defined in a script or inside a "
        f"function; mnn.load in another process knows such a type only if it runs that code "
        f"first. To load the file anywhere, define the class in a module that the loading "
        f"code imports, or declare it in the entry point group 'mnn.layers'")
    assert type(mnn.load(path)[1]) is Halver  # this process knows it: the file is written


def test_save_warns_about_layer_types_of_main_and_not_about_importable_ones(tmp_path,
                                                                           own_registry):
    def identity(self, xp, inputs, feedbacks):
        return inputs

    scripted = [type(name, (mnn.BaseLayer,), {"__module__": "__main__",
                                                "compute_forward": identity})
                for name in ("Second", "First")]
    with pytest.warns(mnn.errors.CheckpointWarning,
                      match=r"^mnn.save: .*: the layer types First \(__main__.First\), Second "
                            r"\(__main__.Second\) are defined in a script"):
        mnn.save(mnn.SequentialLayers([cls() for cls in scripted]), tmp_path / "main.st")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # Scaled is a class of this module: no warning
        mnn.save(mnn.SequentialLayers([Scaled(), mnn.ReluLayer()]), tmp_path / "scaled.st")
