"""Many pictures: the runner (--jobs), the Dask cluster, one task per command."""
