# Source me: the environment satlas builds and runs with (set up by scripts/setup.sh).
export SATLAS_CACHE=${SATLAS_CACHE:-$HOME/.cache/satlas}
export LIBTORCH=${LIBTORCH:-$SATLAS_CACHE/libtorch-2.13.0}
export LIBTORCH_BYPASS_VERSION_CHECK=${LIBTORCH_BYPASS_VERSION_CHECK:-0}
export DUCKDB_LIB_DIR=${DUCKDB_LIB_DIR:-$SATLAS_CACHE/duckdb-1.5.6}
export LD_LIBRARY_PATH="$LIBTORCH/lib:$DUCKDB_LIB_DIR${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export SATLAS_PYTHON=${SATLAS_PYTHON:-$SATLAS_CACHE/python-duckdb-1.5.6/bin/python}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$SATLAS_CACHE/target}
export HDF5_DIR=${HDF5_DIR:-/usr/lib/x86_64-linux-gnu/hdf5/serial}
