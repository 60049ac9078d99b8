"""An mnn backend for dask.array, registered through the entry point group ``mnn.backends``.

The example of a third-party adapter (docs/adapters.md). It says which module its
arrays come from and which devices there are; everything else is mnn's default:
``from_host`` (dask's ``asarray``, placed through array_api_compat's dask namespace),
``to_host`` (``np.asarray``, which computes the graph), ``add_scaled`` (dask arrays
have no in-place ``+=``, but item assignment writes the update into the parameter),
the standard-only ``scatter_add`` and host-drawn ``random_normal``.

Like every adapter, this module does not import dask: mnn imports it only when asked
for the backend by name, or when it meets an array that no other adapter owns (which
means dask is already imported).
"""

from mnn.backends import Backend


class DaskBackend(Backend):
    name = "dask"
    module = "dask.array"  # dask arrays are dask.array.core.Array
    distribution = "dask"

    def devices(self) -> list[str]:
        return ["cpu"]  # dask's chunks are NumPy arrays in main memory
