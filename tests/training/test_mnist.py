"""MNIST from IDX files: the reader on files the tests write, the downloader against a real
HTTP server on 127.0.0.1 (the only way to test it here: this machine has no internet)."""

import gzip
import hashlib
import http.server
import os
import socket
import threading
from functools import partial

import numpy as np
import pytest

from mnn.data import DataError, DownloadError, download, load_mnist, read_idx, write_idx
from mnn.data.mnist import FILES


def _fake_mnist(directory, n_train=12, n_test=5, compress=True, seed=0):
    """Four small IDX files in MNIST's layout; returns the arrays written."""
    rng = np.random.default_rng(seed)
    arrays = {"train_images": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
              "train_labels": rng.integers(0, 10, n_train, dtype=np.uint8),
              "test_images": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
              "test_labels": rng.integers(0, 10, n_test, dtype=np.uint8)}
    for key, array in arrays.items():
        write_idx(os.path.join(directory, FILES[key] + (".gz" if compress else "")), array)
    return arrays


def _md5(path):
    return "md5:" + hashlib.md5(open(path, "rb").read()).hexdigest()


@pytest.fixture
def server(tmp_path):
    """Serve tmp_path/"served" over HTTP on 127.0.0.1 (port 0: any free port); yields (dir, url)."""
    served = tmp_path / "served"
    served.mkdir()

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), partial(Quiet, directory=served))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield served, f"http://127.0.0.1:{httpd.server_address[1]}/"
    httpd.shutdown()
    httpd.server_close()
    thread.join()


# --- the IDX reader ----------------------------------------------------------------------

@pytest.mark.parametrize("compress", [True, False], ids=["gzip", "plain"])
def test_load_mnist_reads_idx_files(tmp_path, compress):
    arrays = _fake_mnist(tmp_path, compress=compress)
    train, test = load_mnist(tmp_path)
    assert train.inputs.shape == (12, 784) and test.inputs.shape == (5, 784)
    np.testing.assert_array_equal(train.inputs, arrays["train_images"].reshape(12, 784) / 255.0)
    np.testing.assert_array_equal(test.labels, arrays["test_labels"])
    assert train.labels.dtype == np.int64 and 0.0 <= train.inputs.min() <= train.inputs.max() <= 1


@pytest.mark.parametrize("dtype", ["u1", "i1", ">i2", ">i4", ">f4", ">f8"])
def test_idx_round_trip_every_type(tmp_path, dtype):
    array = (np.arange(24).reshape(2, 3, 4) - 5).astype(dtype)
    write_idx(tmp_path / "a.idx", array)
    np.testing.assert_array_equal(read_idx(tmp_path / "a.idx", ndim=3), array)
    raw = (tmp_path / "a.idx").read_bytes()
    assert raw[:2] == b"\0\0" and raw[3] == 3 and int.from_bytes(raw[4:8], "big") == 2


def test_idx_header_matches_the_published_magic_numbers(tmp_path):
    write_idx(tmp_path / "i", np.zeros((2, 28, 28), np.uint8))
    write_idx(tmp_path / "l", np.zeros(2, np.uint8))
    assert (tmp_path / "i").read_bytes()[:4].hex() == "00000803"
    assert (tmp_path / "l").read_bytes()[:4].hex() == "00000801"


def test_truncated_idx_files_name_the_file(tmp_path):
    _fake_mnist(tmp_path, compress=False)
    path = tmp_path / FILES["train_images"]
    data = path.read_bytes()
    path.write_bytes(data[:-7])
    with pytest.raises(DataError, match=rf"{path}: truncated IDX file: the header says shape "
                                        rf"\(12, 28, 28\) of uint8, 9424 bytes in all, but the "
                                        rf"file has 9417"):
        load_mnist(tmp_path)
    path.write_bytes(data[:10])
    with pytest.raises(DataError, match=rf"{path}: truncated IDX header: 10 bytes, but 3 "
                                        rf"dimensions need 16"):
        load_mnist(tmp_path)
    path.write_bytes(data[:3])
    with pytest.raises(DataError, match=r"truncated IDX file: 3 bytes"):
        read_idx(path)
    path.write_bytes(data + b"\0")
    with pytest.raises(DataError, match=r"too long IDX file"):
        read_idx(path)


def test_truncated_gzip_names_the_file(tmp_path):
    _fake_mnist(tmp_path)
    path = tmp_path / (FILES["test_labels"] + ".gz")
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(DataError, match=rf"{path}: corrupt or truncated gzip file"):
        load_mnist(tmp_path)


def test_wrong_magic_numbers_and_shapes(tmp_path):
    _fake_mnist(tmp_path, compress=False)
    labels = tmp_path / FILES["train_labels"]
    images = tmp_path / FILES["train_images"]
    labels.write_bytes(b"\x12\x34" + labels.read_bytes()[2:])
    with pytest.raises(DataError, match=rf"{labels}: not an IDX file: magic number 0x12340801"):
        load_mnist(tmp_path)
    write_idx(labels, np.zeros((12, 1), np.uint8))  # labels with 2 dimensions
    with pytest.raises(DataError, match=rf"{labels}: expected an IDX file of 1 dimensions "
                                        rf"\(magic 0x00000801\), got 2"):
        load_mnist(tmp_path)
    write_idx(labels, np.zeros(11, np.uint8))
    with pytest.raises(DataError, match=r"MNIST \(train\): .* holds 12 images but .* holds 11"):
        load_mnist(tmp_path)
    write_idx(labels, np.zeros(12, np.uint8))
    write_idx(images, np.zeros((12, 27, 28), np.uint8))
    with pytest.raises(DataError, match=rf"{images}: expected images of 28x28 pixels, got 27x28"):
        load_mnist(tmp_path)
    write_idx(images, np.zeros((12, 28, 28), np.float32))
    with pytest.raises(DataError, match=r"expected unsigned bytes \(IDX type 08\)"):
        load_mnist(tmp_path)
    write_idx(images, np.zeros((12, 28, 28), np.uint8))
    write_idx(labels, np.full(12, 10, np.uint8))
    with pytest.raises(DataError, match=r"labels must be digits 0-9, found 10"):
        load_mnist(tmp_path)


def test_missing_files_and_directory(tmp_path):
    with pytest.raises(DataError, match=r"lacks train-images-idx3-ubyte\[.gz\], train-labels"
                                        r".*or pass download=True to fetch them"):
        load_mnist(tmp_path)
    with pytest.raises(DataError, match=r"nowhere does not exist"):
        load_mnist(tmp_path / "nowhere")


# --- the downloader ----------------------------------------------------------------------

def test_download_fetches_checks_and_loads(tmp_path, server):
    served, url = server
    arrays = _fake_mnist(served)
    checksums = {FILES[k] + ".gz": _md5(served / (FILES[k] + ".gz")) for k in FILES}
    target = tmp_path / "data"
    train, test = load_mnist(target, download=True, base_urls=[url], checksums=checksums)
    np.testing.assert_array_equal(train.labels, arrays["train_labels"])
    assert sorted(os.listdir(target)) == sorted(checksums), "no temporary files left behind"
    # Present and correct: not fetched again, even when the server is gone.
    load_mnist(target, download=True, base_urls=["http://127.0.0.1:9/"], checksums=checksums)


def test_download_tries_the_next_mirror(tmp_path, server):
    served, url = server
    (served / "good").mkdir()
    write_idx(served / "good" / "a.gz", np.arange(3, dtype=np.uint8))
    checksum = _md5(served / "good" / "a.gz")
    paths = download(tmp_path / "d", {"a.gz": checksum}, [url + "missing/", url + "good/"])
    np.testing.assert_array_equal(read_idx(paths[0]), np.arange(3))


def test_download_with_sha256(tmp_path, server):
    served, url = server
    (served / "a").write_bytes(b"hello")
    checksum = "sha256:" + hashlib.sha256(b"hello").hexdigest()
    download(tmp_path, {"a": checksum}, [url])
    assert (tmp_path / "a").read_bytes() == b"hello"


def test_corrupted_download_leaves_no_file(tmp_path, server):
    served, url = server
    (served / "a.gz").write_bytes(gzip.compress(b"the wrong bytes"))
    expected = "md5:" + "0" * 32
    with pytest.raises(DownloadError, match=rf"could not download a.gz from any of 1 mirrors: "
                                            rf"{url}a.gz: checksum mismatch: expected {expected}, "
                                            rf"got md5:[0-9a-f]{{32}}\.$"):
        download(tmp_path / "d", {"a.gz": expected}, [url])
    assert os.listdir(tmp_path / "d") == []


def test_corrupted_download_keeps_the_old_file(tmp_path, server):
    served, url = server
    (served / "a").write_bytes(b"new")
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "a").write_bytes(b"old, not the published bytes either")
    with pytest.raises(DownloadError, match="checksum mismatch"):
        download(tmp_path / "d", {"a": "md5:" + hashlib.md5(b"published").hexdigest()}, [url])
    assert os.listdir(tmp_path / "d") == ["a"]
    assert (tmp_path / "d" / "a").read_bytes() == b"old, not the published bytes either"


def test_404_is_reported_per_mirror(tmp_path, server):
    _, url = server
    with pytest.raises(DownloadError, match=rf"{url}nothing.gz: HTTP 404 File not found"):
        download(tmp_path / "d", {"nothing.gz": "md5:" + "0" * 32}, [url])
    assert os.listdir(tmp_path / "d") == []


def test_offline_gives_a_clear_error(tmp_path):
    with socket.socket() as probe:  # a port on which nobody listens: as good as offline
        probe.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{probe.getsockname()[1]}/"
    with pytest.raises(DownloadError, match=r"No mirror could be reached: is this machine "
                                            r"offline\? Then copy the files into"):
        load_mnist(tmp_path, download=True, base_urls=[dead])
    assert os.listdir(tmp_path) == []


def test_bad_checksum_spec(tmp_path):
    with pytest.raises(ValueError, match=r"expected '<algorithm>:<hex digest>'"):
        download(tmp_path, {"a": "f68b3c2d"}, ["http://127.0.0.1:9/"])


def test_published_checksums_are_md5_of_the_four_gz_files():
    from mnn.data.mnist import CHECKSUMS

    assert sorted(CHECKSUMS) == sorted(name + ".gz" for name in FILES.values())
    assert all(len(c.removeprefix("md5:")) == 32 for c in CHECKSUMS.values())
