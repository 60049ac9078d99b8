"""Backend adapters: detection without importing, devices, host round trips, scatter-add,
seeded random numbers, clear errors, and third-party adapters through entry points."""

import copy
import importlib
import pickle
import re
import subprocess
import sys
import textwrap
import warnings

import array_api_compat
import numpy as np
import pytest
from helpers import install_broken_adapters, install_fake_adapter

import mnn
from mnn import backends
from mnn.base import dtype_name

ARRAY_LIBRARIES = ("torch", "cupy", "jax", "jaxlib")


# --- import mnn imports no array library ---------------------------------------------------

def test_import_mnn_imports_no_array_library():
    """Nor does using it on NumPy arrays, nor listing and looking up the adapters, third-party
    ones included (an installed adapter's module must not import its library either)."""
    code = textwrap.dedent(f"""
        import sys
        import numpy as np
        import mnn
        assert not set({ARRAY_LIBRARIES!r}) & set(sys.modules), "import mnn"
        layer = mnn.LinearLayer(3, 2, rng=0)
        layer.backward(layer(np.ones((4, 3))))
        assert mnn.backends.for_array(np.ones(2)).name == "numpy"
        adapters = mnn.backends.available()
        for name in adapters:
            mnn.backends.get(name)
        libraries = {{b.module for b in adapters.values() if b.name != "numpy"}}
        loaded = (set({ARRAY_LIBRARIES!r}) | libraries) & set(sys.modules)
        assert not loaded, f"using mnn on numpy arrays imported {{loaded}}"
    """)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


# --- detection -------------------------------------------------------------------------------

def test_for_array_finds_the_owner(target):
    array = target.asarray(np.ones(3))
    assert backends.for_array(array) is target.backend
    assert target.backend.owns(array)
    others = [b for b in backends.available().values() if b is not target.backend
              and b.is_loaded()]
    assert not [b.name for b in others if b.owns(array)]


def test_namespace_finds_its_backend(target):
    assert backends.for_namespace(target.xp) is target.backend
    assert backends.for_namespace(target.backend.name) is target.backend
    assert backends.for_namespace(array_api_compat.array_namespace(
        target.asarray(np.ones(2)))) is target.backend

def test_torch_parameter_belongs_to_torch():
    torch = pytest.importorskip("torch", reason="torch is not installed")
    assert backends.for_array(torch.nn.Parameter(torch.ones(2))).name == "torch"


def test_unowned_object_is_a_clear_error():
    with pytest.raises(TypeError, match=r"no mnn backend owns an object of type builtins.list; "
                                        r"known backends: .*numpy"):
        backends.for_array([1.0, 2.0])


def test_unknown_backend_name_is_a_clear_error():
    known = sorted(backends.available())  # with the third-party adapters installed here
    assert {"array_api_strict", "cupy", "jax", "numpy", "torch"} <= set(known)
    message = (f"unknown backend 'tensorflow'; known backends: {', '.join(known)} (others "
               f"register through the entry point group 'mnn.backends')")
    with pytest.raises(ValueError, match=re.escape(message)):
        backends.get("tensorflow")
    with pytest.raises(ValueError, match=r"unknown backend 'tensorflow'"):
        mnn.LinearLayer(2, 2, rng=0).to(xp="tensorflow")


def test_namespace_and_module_find_their_backend():
    assert backends.for_namespace(np).name == "numpy"
    assert backends.for_namespace(array_api_compat.array_namespace(np.ones(1))).name == "numpy"
    jax = pytest.importorskip("jax", reason="jax is not installed")
    assert backends.for_namespace(jax.numpy).name == "jax"
    with pytest.raises(ValueError, match=r"no mnn backend for namespace 'textwrap'"):
        backends.for_namespace(textwrap)


# --- devices ---------------------------------------------------------------------------------

def test_torch_devices_are_those_that_allocate():
    torch = pytest.importorskip("torch", reason="torch is not installed")
    present = backends.get("torch").devices()
    assert present[0] == "cpu"
    for name in present:
        assert torch.zeros(1, device=name).device == backends.get("torch").device(name)
    if not torch.cuda.is_available():
        assert not [name for name in present if name.startswith("cuda")]
    if not torch.backends.mps.is_available():
        assert "mps" not in present
    assert backends.get("torch").devices() == present  # cached, and a copy each time
    assert backends.get("torch").devices() is not backends.get("torch").devices()


def test_cupy_without_gpu_has_no_device():
    cupy = pytest.importorskip("cupy", reason="cupy is not installed")
    backend = backends.get("cupy")
    if cupy.is_available():
        assert backend.devices() == [f"cuda:{i}" for i in range(len(backend.devices()))]
        return
    assert backend.devices() == []
    with pytest.raises(RuntimeError, match=r"backend 'cupy' has no device present on this machine"):
        backend.default_device()


def test_cupy_device_names():
    pytest.importorskip("cupy", reason="cupy is not installed")
    backend = backends.get("cupy")
    assert backend.device_name(backend.device("cuda:1")) == "cuda:1"
    assert backend.device_name(backend.device("cuda")) == "cuda:0"
    with pytest.raises(ValueError, match=r"cupy devices are named 'cuda' or 'cuda:N', got 'cpu'"):
        backend.device("cpu")


def test_jax_devices_are_jax_devices():
    jax = pytest.importorskip("jax", reason="jax is not installed")
    backend = backends.get("jax")
    assert [backend.device(name) for name in backend.devices()] == jax.devices()
    with pytest.raises(ValueError, match=r"jax has no device 'tpu:7'; present: \['cpu'"):
        backend.device("tpu:7")


def test_every_target_device_round_trips_its_name(target):
    assert target.backend.device(target.backend.device_name(target.device)) == target.device
    assert target.device_name in target.backend.devices()
    target.backend.synchronize(target.device, target.asarray(np.ones(2)))


# --- host round trips ------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", ["float32", "float64", "int64", "bool"])
def test_from_host_and_back(target, rng, dtype):
    host = (rng.standard_normal((3, 4)) * 10).astype(dtype)
    array = target.backend.from_host(host, target.device, dtype)  # a dtype name works too
    assert target.backend.owns(array)
    assert dtype_name(array.dtype) == dtype
    assert array_api_compat.device(array) == target.device
    kept = host.copy()
    host[...] = 0  # a new array, never a view of the host's (a lazy library would read it later)
    back = target.backend.to_host(array)
    assert isinstance(back, np.ndarray) and back.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(back, kept)


def test_from_host_converts_dtype(target, rng):
    host = rng.standard_normal(5)
    array = target.backend.from_host(host, target.device, target.xp.float32)
    np.testing.assert_array_equal(target.to_host(array), host.astype(np.float32))


def test_jax_float64_without_x64_is_a_clear_error():
    pytest.importorskip("jax", reason="jax is not installed")
    code = textwrap.dedent("""
        import numpy as np, jax, mnn
        jax.config.update("jax_enable_x64", False)
        backend = mnn.backends.get("jax")
        try:
            backend.from_host(np.ones(2), "cpu", "float64")
        except ValueError as error:
            assert "jax_enable_x64" in str(error), error
        else:
            raise AssertionError("no error")
    """)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


# --- scatter-add -----------------------------------------------------------------------------

SCATTER_CASES = {
    "matrix": ((5, 3), [0, 2, 2, 4, 0, 0]),
    "vector": ((4,), [3, 3, 3, 1]),
    "stack": ((3, 2, 2), [1, 1, 0]),
    "no-indices": ((3, 2), []),
}


@pytest.mark.parametrize("generic", [False, True], ids=["adapter", "standard-fallback"])
@pytest.mark.parametrize("case", SCATTER_CASES, ids=list(SCATTER_CASES))
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_scatter_add_accumulates_repeated_indices(target, rng, case, dtype, generic):
    shape, indices = SCATTER_CASES[case]
    host_target = rng.standard_normal(shape).astype(dtype)
    host_values = rng.standard_normal((len(indices), *shape[1:])).astype(dtype)
    host_indices = np.asarray(indices, dtype=np.int64)
    expected = host_target.copy()
    np.add.at(expected, host_indices, host_values)

    t = target.asarray(host_target, dtype)
    scatter = backends.Backend.scatter_add if generic else type(target.backend).scatter_add
    values = target.asarray(host_values, dtype)
    out = scatter(target.backend, t, target.asarray(host_indices), values)

    assert target.backend.owns(out) and dtype_name(out.dtype) == dtype
    assert array_api_compat.device(out) == target.device
    rtol = 1e-6 if dtype == "float32" else 1e-14
    np.testing.assert_allclose(target.to_host(out), expected, rtol=rtol, atol=rtol)
    np.testing.assert_array_equal(target.to_host(t), host_target)  # target left alone


# --- add-scaled (the gradient descent update) ------------------------------------------------

@pytest.mark.parametrize("generic", [False, True], ids=["adapter", "standard-fallback"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_add_scaled_updates_the_target(target, rng, dtype, generic):
    host_target = rng.standard_normal((7, 5)).astype(dtype)
    host_source = rng.standard_normal((7, 5)).astype(dtype)
    t, source = target.asarray(host_target, dtype), target.asarray(host_source, dtype)
    add_scaled = backends.Backend.add_scaled if generic else type(target.backend).add_scaled
    out = add_scaled(target.backend, t, -0.25, source)

    assert target.backend.owns(out) and dtype_name(out.dtype) == dtype
    assert array_api_compat.device(out) == target.device
    rtol = 1e-6 if dtype == "float32" else 1e-15
    np.testing.assert_allclose(target.to_host(out), host_target - 0.25 * host_source,
                               rtol=rtol, atol=rtol)
    np.testing.assert_array_equal(target.to_host(source), host_source)  # source left alone
    if array_api_compat.is_writeable_array(t):  # in place: the very same array, updated
        assert out is t


# --- seeded random numbers -------------------------------------------------------------------

def seeded_draws(target, draw, dtype) -> np.ndarray:
    """Check that ``draw`` (an adapter's random_normal or random_uniform) gives an array of
    its library, dtype, shape and device, the same for the same seed and not for another;
    return the 10,000 numbers of seed 7 on the host."""
    first = draw((200, 50), 7, target.device, dtype)
    assert target.backend.owns(first) and dtype_name(first.dtype) == dtype
    assert tuple(first.shape) == (200, 50)
    assert array_api_compat.device(first) == target.device
    host = target.to_host(first)
    np.testing.assert_array_equal(host, target.to_host(draw((200, 50), 7, target.device, dtype)))
    assert not np.array_equal(host, target.to_host(draw((200, 50), 8, target.device, dtype)))
    return host


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_random_normal_is_seeded(target, dtype):
    host = seeded_draws(target, target.backend.random_normal, dtype)
    assert abs(host.mean()) < 0.03 and abs(host.std() - 1) < 0.03  # 10,000 draws of N(0, 1)


def test_random_normal_from_a_numpy_generator_is_the_host_stream(target):
    out = target.backend.random_normal((4, 3), np.random.default_rng(5), target.device, "float64")
    np.testing.assert_array_equal(target.to_host(out),
                                  np.random.default_rng(5).standard_normal((4, 3)))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_random_uniform_is_seeded(target, dtype):
    host = seeded_draws(target, target.backend.random_uniform, dtype)
    assert host.min() >= 0.0 and host.max() < 1.0
    assert abs(host.mean() - 0.5) < 0.01 and abs(host.var() - 1 / 12) < 0.01  # U[0, 1)


def test_random_uniform_from_a_numpy_generator_is_the_host_stream(target):
    out = target.backend.random_uniform((4, 3), np.random.default_rng(5), target.device, "float64")
    np.testing.assert_array_equal(target.to_host(out), np.random.default_rng(5).random((4, 3)))


@pytest.mark.parametrize("kind", ["random_normal", "random_uniform"])
def test_the_librarys_own_generator_is_a_seed_too(target, kind):
    """What ``generator`` makes of an int seed (a torch.Generator, a JAX KeyStream, a NumPy
    generator) draws the numbers of that int."""
    draw = getattr(target.backend, kind)
    own = target.backend.generator(11, target.device)
    np.testing.assert_array_equal(target.to_host(draw((4, 3), own, target.device, "float32")),
                                  target.to_host(draw((4, 3), 11, target.device, "float32")))


@pytest.mark.parametrize("kind", ["random_normal", "random_uniform"])
def test_the_librarys_own_generator_gives_new_numbers_at_each_draw(target, kind):
    """One generator for many draws (GPT.generate draws each step from one) moves on, as
    NumPy's and torch's do; a JAX key alone would give the same numbers every time."""
    draw = getattr(target.backend, kind)
    own = target.backend.generator(11, target.device)
    first = target.to_host(draw((4, 3), own, target.device, "float32"))
    second = target.to_host(draw((4, 3), own, target.device, "float32"))
    assert not np.array_equal(first, second)


@pytest.mark.parametrize("kind", ["random_normal", "random_uniform"])
def test_a_seed_the_adapter_cannot_draw_from_is_a_clear_error(kind):
    backend = backends.get("numpy")
    with pytest.raises(TypeError, match=r"backend 'numpy' draws from an int seed or a "
                                        r"numpy.random.Generator, got 'seven'"):
        getattr(backend, kind)((2,), "seven", "cpu")


# --- sigmoid ----------------------------------------------------------------------------------

@pytest.mark.parametrize("generic", [False, True], ids=["adapter", "standard-fallback"])
@pytest.mark.parametrize("dtype", ["float16", "float32", "float64"])
def test_sigmoid_is_accurate_everywhere(target, dtype, generic):
    """Against 1 / (1 + e^-x) in long double: a few ulps, down to the smallest subnormal
    (float16's results below 6e-5 among them); no overflow at x = -1e4."""
    if not hasattr(target.xp, dtype):
        pytest.skip(f"{target.backend.name} has no {dtype}")
    if dtype == "float16" and not generic and target.backend.name == "jax":
        pytest.xfail("jax.nn.sigmoid rounds float16 results below 2e-5 to 0 (e^-x overflows)")
    host = np.concatenate([np.linspace(-30, 30, 121), [-80.0, -1e4, 1e4, 0.0]]).astype(dtype)
    sigmoid = backends.Backend.sigmoid if generic else type(target.backend).sigmoid
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "overflow encountered in exp"
        out = sigmoid(target.backend, target.asarray(host, dtype))
    assert target.backend.owns(out) and dtype_name(out.dtype) == dtype
    exact = 1 / (1 + np.exp(-np.asarray(host, dtype=np.longdouble)))
    ulp = np.finfo(dtype).eps
    np.testing.assert_allclose(target.to_host(out), exact.astype(dtype), rtol=8 * ulp,
                               atol=np.finfo(dtype).smallest_subnormal * 2)


# --- erf --------------------------------------------------------------------------------------

ERF_AT = {0.0: 0.0, 0.5: 0.5204998778130465, 1.0: 0.8427007929497149, -2.0: -0.9953222650189527,
          4.0: 0.9999999845827421}  # erf(x) to double precision (Abramowitz and Stegun, 7.1)


def test_erf_where_the_library_has_one(target):
    x = target.asarray(np.array(list(ERF_AT)))
    try:
        out = target.backend.erf(x)
    except NotImplementedError as error:
        # Only an adapter that keeps the protocol's default (array-api-strict, a
        # third-party one such as dask's) or NumPy without SciPy may lack erf.
        keeps_default = type(target.backend).erf is backends.Backend.erf
        assert keeps_default or target.backend.name == "numpy", error
        assert f"{target.backend.name} has no erf function" in str(error)
        pytest.skip(f"no erf on this target: {error}")
    assert target.backend.owns(out) and out.dtype == x.dtype
    np.testing.assert_allclose(target.to_host(out), list(ERF_AT.values()), rtol=1e-14, atol=1e-16)


# --- pickling --------------------------------------------------------------------------------

def test_an_adapter_pickles_as_the_registered_one(target):
    """A pickled adapter is its name: unpickling and deep copies give the registered adapter
    back, even once it has cached its namespace (a module, which does not pickle)."""
    target.backend.namespace()
    assert pickle.loads(pickle.dumps(target.backend)) is target.backend
    assert copy.deepcopy(target.backend) is target.backend


def test_a_placement_pickles_as_its_names(target):
    placement = backends.Placement.named(target.backend.name, target.device_name, "float32")
    clone = pickle.loads(pickle.dumps(placement))
    assert clone == placement and clone.backend is target.backend
    assert clone.names() == (target.backend.name, target.device_name, "float32")


def test_a_registered_third_party_adapter_pickles_by_name(registry):
    class Pickled(backends.Backend):
        name = "mnn_pickled"
        module = "mnn_no_such_library"

        def devices(self):
            return []

    adapter = backends.register(Pickled)
    assert pickle.loads(pickle.dumps(adapter)) is adapter
    assert copy.deepcopy([adapter, adapter]) == [adapter, adapter]


# --- third-party adapters through the mnn.backends entry point group --------------------------

@pytest.fixture
def registry(monkeypatch):
    """Let a test register backends and load entry points; the registry (and its list of
    broken entry points) is as it was afterwards."""
    monkeypatch.setattr(backends.registry, "_REGISTRY", dict(backends.registry._REGISTRY))
    monkeypatch.setattr(backends.registry, "_BROKEN", dict(backends.registry._BROKEN))
    return backends.registry._REGISTRY


def test_entry_point_adapter_is_found_on_first_lookup(tmp_path, monkeypatch, registry):
    module = "mnn_fake_backend_a"
    install_fake_adapter(tmp_path, module, textwrap.dedent(f"""
        fake = {module}:FakeBackend
        fake_instance = {module}:INSTANCE
        numpy = {module}:FakeBackend
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, module, raising=False)
    assert "fake" not in registry and module not in sys.modules  # nothing loaded eagerly

    fake = importlib.import_module(module)
    array = fake.FakeArray([1.0, 2.0])
    backend = backends.for_array(array)  # no built-in owns it: the entry points are loaded
    assert type(backend) is fake.FakeBackend and backends.get("fake") is backend
    assert backends.get("fake_instance") is fake.INSTANCE  # an instance works as well as a class
    assert type(backends.get("numpy")).__name__ == "NumpyBackend"  # built-ins win
    np.testing.assert_array_equal(backend.to_host(array), [1.0, 2.0])
    assert set(backends.available()) >= {"fake", "fake_instance", "numpy", "torch"}


def test_entry_point_by_name_and_broken_ones(tmp_path, monkeypatch, registry):
    module = "mnn_fake_backend_b"
    install_fake_adapter(tmp_path, module, textwrap.dedent(f"""
        fake = {module}:FakeBackend
        broken = {module}:does_not_exist
        misnamed = {module}:FakeBackend
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    assert backends.get("fake").name == "fake"
    assert "misnamed" not in registry  # looking up one name loads only that entry point
    with pytest.warns(RuntimeWarning) as caught:
        backends.available()
    messages = sorted(str(w.message) for w in caught)
    assert "could not load backend entry point broken" in messages[0]
    assert "does_not_exist" in messages[0]
    assert "entry point misnamed" in messages[1]
    assert "its backend is called 'fake', not 'misnamed'" in messages[1]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a broken entry point is tried, and warned about, once
        with pytest.raises(ValueError, match=r"backend 'broken' could not be loaded from its "
                                             r"entry point mnn_fake_backend_b:does_not_exist: "
                                             r"AttributeError"):
            backends.get("broken")
        assert sorted(backends.registry.broken()) == ["broken", "misnamed"]


def test_a_broken_adapter_is_reported_and_skipped(tmp_path, monkeypatch, registry):
    """An entry point whose module raises SystemExit as it is imported, an adapter whose
    devices() raises, a library whose import raises: each is named with its error, and the
    other backends go on."""
    install_broken_adapters(tmp_path, "mnn_fake_backend_c")
    (tmp_path / "mnn_raises_on_import.py").write_text("raise RuntimeError('no libfoo.so')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.warns(RuntimeWarning, match=r"^mnn: could not load backend entry point exits = "
                                            r"mnn_fake_backend_c_exits:FakeBackend: SystemExit: 3; "
                                            r"skipped$"):
        found = backends.available()  # the SystemExit does not end the program
    assert {"numpy", "fake", "thatone"} <= set(found) and "exits" not in found
    assert backends.registry.broken() == {"exits": "mnn_fake_backend_c_exits:FakeBackend: "
                                                   "SystemExit: 3"}
    probe = backends.registry.probe
    assert probe(found["numpy"]) == (("cpu",), None, None)
    assert probe(found["thatone"]).broken == ("its devices() raised RuntimeError: no driver "
                                              "for thatone")

    class RaisesOnImport(backends.Backend):
        name, module = "raises_on_import", "mnn_raises_on_import"

    class NotInstalled(backends.Backend):
        name, module = "not_installed", "mnn_no_such_library"

    assert probe(RaisesOnImport()).broken == ("importing mnn_raises_on_import raised "
                                              "RuntimeError: no libfoo.so")
    assert probe(NotInstalled()) == ((), "No module named 'mnn_no_such_library'", None)


# --- threads ---------------------------------------------------------------------------------

def test_lookups_are_thread_safe_while_adapters_register(registry):
    """for_array and available() from many threads while others register adapters: every
    lookup answers, none sees the registry change size under it."""
    import threading

    class Extra(backends.Backend):
        module = "mnn_no_such_library"

        def devices(self):
            return []

    errors, arrays = [], [np.ones(2), np.float64(1.0)]
    start = threading.Barrier(8)

    def look_up():
        start.wait()
        try:
            for _ in range(300):
                assert backends.for_array(arrays[0]).name == "numpy"
                assert "numpy" in backends.available()
        except Exception as error:  # noqa: BLE001  (collected and reported below)
            errors.append(error)

    def register(first):
        start.wait()
        try:
            for i in range(first, first + 300):
                backends.register(type(f"Extra{i}", (Extra,), {"name": f"extra{i}"}))
        except Exception as error:  # noqa: BLE001
            errors.append(error)

    threads = [threading.Thread(target=look_up) for _ in range(6)]
    threads += [threading.Thread(target=register, args=(i * 1000,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors[:3]
    assert sum(name.startswith("extra") for name in registry) == 600


# --- the package layout -----------------------------------------------------------------------

ROOT = __import__("pathlib").Path(__file__).resolve().parents[2]


def test_a_source_checkout_maps_exactly_mnn_backends():
    """From the repository root, mnn.backends is the backends/ folder and nothing else of the
    repository (tests, noxfile, a second mnn) becomes part of mnn."""
    code = textwrap.dedent("""
        import importlib, pathlib, sys
        sys.path.insert(0, ".")
        import mnn
        assert pathlib.Path(mnn.__file__).resolve() == pathlib.Path("mnn/__init__.py").resolve()
        assert pathlib.Path(mnn.backends.__file__).resolve() == (
            pathlib.Path("backends/__init__.py").resolve())
        for name in ("mnn.tests", "mnn.noxfile", "mnn.mnn", "mnn.benchmarks", "mnn.docs"):
            try:
                importlib.import_module(name)
            except ModuleNotFoundError:
                continue
            raise AssertionError(f"{name} is importable")
    """)
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                            text=True)
    assert result.returncode == 0, result.stderr


def test_mypy_checks_the_source_checkout_without_crashing(tmp_path):
    """mypy resolves mnn.backends (the backends/ folder) in a source checkout, and checks
    mnn without an INTERNAL ERROR."""
    pytest.importorskip("mypy", reason="mypy is not installed (it is in the test extra)")
    result = subprocess.run([sys.executable, "-m", "mypy", "mnn", "--cache-dir",
                             str(tmp_path)], cwd=ROOT, capture_output=True, text=True, timeout=600)
    output = result.stdout + result.stderr
    assert "INTERNAL ERROR" not in output and "Traceback" not in output, output[-3000:]
    assert result.returncode in (0, 1), output[-3000:]  # 1: type errors, reported, not a crash
    assert 'Cannot find implementation or library stub for module named "mnn.backends' not in output


@pytest.mark.parametrize("view", ["flipped", "0-d", "strided"])
def test_from_host_takes_any_numpy_layout(target, rng, view):
    """Views with negative strides (np.flip), 0-d arrays, every other column: the same values
    arrive (torch refuses views with negative strides, np.ascontiguousarray makes 0-d 1-d)."""
    base = rng.standard_normal((3, 4))
    host = {"flipped": np.flip(base, axis=0), "0-d": np.asarray(base[1, 2]),
            "strided": base[:, ::2]}[view]
    array = target.backend.from_host(host, target.device, "float64")
    assert tuple(array.shape) == host.shape
    np.testing.assert_array_equal(target.to_host(array), host)
    host[...] = 0.0  # a copy, not a view of the host array
    assert np.any(target.to_host(array) != 0.0)
