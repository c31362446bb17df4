#!/usr/bin/env bash
# satlas setup: installs what a fresh machine of this kind lacks, idempotently.
#   - Debian: libhdf5-dev (h5ad reader), pkg-config, clang-less C/C++ toolchain is already present.
#   - DuckDB 1.5.6: the official prebuilt libduckdb.so (release build, Parquet built in) from the
#     DuckDB project's npm package, checksum-verified (build.rs links it and checks the stamp).
#   - libtorch for tch, assembled from PyPI wheels (torch-sys cannot download libtorch here):
#     only the CPU libraries of the `torch` wheel plus the two CUDA runtime libraries that
#     libtorch_cpu.so is linked against; libtorch.so is an empty stub (the real one only pulls in
#     libtorch_cuda / cuBLAS / cuDNN, which satlas never uses).
# Prints the environment to use (source scripts/env.sh does the same without installing).
set -euo pipefail

TORCH_VERSION=2.13.0          # must match tch 0.26.0 (torch-sys checks build-version)
CUDART_WHEEL=nvidia-cuda-runtime==13.0.96
CUPTI_WHEEL=nvidia-cuda-cupti==13.0.85
SATLAS_CACHE=${SATLAS_CACHE:-$HOME/.cache/satlas}
LIBTORCH=${LIBTORCH:-$SATLAS_CACHE/libtorch-$TORCH_VERSION}
DUCKDB_VERSION=1.5.6
DUCKDB_NPM_PACKAGE=@duckdb/node-bindings-linux-x64@$DUCKDB_VERSION-r.1
DUCKDB_NPM_SHA256=1b9f82478539bb9a1d1df44bd103121a12ae52142c07158dc52b97d2ec1d69ff
DUCKDB_LIB_SHA256=3f4962cdd266eab2b479a5b5a4a6d063d279b2954ae814ed00385d553b747633
DUCKDB_LIB_DIR=${DUCKDB_LIB_DIR:-$SATLAS_CACHE/duckdb-$DUCKDB_VERSION}

say() { printf '[setup] %s\n' "$*" >&2; }
die() { printf '[setup] error: %s\n' "$*" >&2; exit 1; }

install_debian_packages() {
  local missing=()
  # fonts-dejavu-core: the font of the text in PNG pictures (`satlas plot --out F.png`).
  for pkg in libhdf5-dev pkg-config fonts-dejavu-core; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    say "installing Debian packages: ${missing[*]}"
    local sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
}

install_libtorch() {
  if [ -f "$LIBTORCH/build-version" ] && [ "$(cat "$LIBTORCH/build-version")" = "$TORCH_VERSION" ] \
     && [ -f "$LIBTORCH/lib/libtorch_cpu.so" ]; then
    return 0
  fi
  say "assembling libtorch $TORCH_VERSION (CPU) under $LIBTORCH from PyPI wheels"
  local work; work=$(mktemp -d)
  python3 -m pip download --quiet --no-deps --only-binary=:all: --dest "$work/wheels" \
    "torch==$TORCH_VERSION" "$CUDART_WHEEL" "$CUPTI_WHEEL"
  local stage="$work/libtorch"
  mkdir -p "$stage/lib" "$stage/include"
  python3 - "$work/wheels" "$stage" <<'PY'
import sys, zipfile, pathlib, shutil
wheels, stage = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
keep_torch_libs = {"libtorch_cpu.so", "libc10.so", "libgomp.so.1"}
keep_cuda_libs = {"libcudart.so.13", "libcupti.so.13"}
for whl in wheels.glob("*.whl"):
    with zipfile.ZipFile(whl) as z:
        for name in z.namelist():
            p = pathlib.PurePosixPath(name)
            if whl.name.startswith("torch-"):
                if name.startswith("torch/include/") and not name.endswith("/"):
                    dest = stage / "include" / pathlib.PurePosixPath(*p.parts[2:])
                elif name.startswith("torch/lib/") and p.name in keep_torch_libs:
                    dest = stage / "lib" / p.name
                else:
                    continue
            elif p.name in keep_cuda_libs:
                dest = stage / "lib" / p.name
            else:
                continue
            dest.parent.mkdir(parents=True, exist_ok=True)
            with z.open(name) as src, open(dest, "wb") as out:
                shutil.copyfileobj(src, out)
PY
  # The wheel's libgomp is versioned by hash; expose the plain soname too.
  ( cd "$stage/lib" && for f in libgomp*.so*; do [ -e libgomp.so.1 ] || ln -s "$f" libgomp.so.1; done )
  echo 'void satlas_libtorch_stub(void) {}' > "$work/stub.c"
  gcc -shared -fPIC -o "$stage/lib/libtorch.so" "$work/stub.c"
  echo "$TORCH_VERSION" > "$stage/build-version"
  mkdir -p "$(dirname "$LIBTORCH")"
  rm -rf "$LIBTORCH"
  mv "$stage" "$LIBTORCH"
  rm -rf "$work"
  say "libtorch ready: $(du -sh "$LIBTORCH" | cut -f1)"
}

# The stamp build.rs checks: the version and the library's verified checksum.
duckdb_stamp() { echo "v$DUCKDB_VERSION $DUCKDB_LIB_SHA256"; }

install_duckdb() {
  local lib="$DUCKDB_LIB_DIR/libduckdb.so" stamp="$DUCKDB_LIB_DIR/satlas-duckdb.stamp"
  if [ -f "$lib" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$(duckdb_stamp)" ] \
     && echo "$DUCKDB_LIB_SHA256  $lib" | sha256sum --check --status; then
    return 0
  fi
  command -v npm >/dev/null || die "npm is needed to fetch DuckDB's prebuilt library ($DUCKDB_NPM_PACKAGE); install Node.js (apt-get install npm)"
  say "fetching DuckDB $DUCKDB_VERSION's prebuilt library ($DUCKDB_NPM_PACKAGE) into $DUCKDB_LIB_DIR"
  local work; work=$(mktemp -d)
  (cd "$work" && npm pack --silent "$DUCKDB_NPM_PACKAGE" >/dev/null) \
    || die "npm could not fetch $DUCKDB_NPM_PACKAGE (is the npm registry reachable?)"
  local tgz; tgz=$(ls "$work"/*.tgz)
  echo "$DUCKDB_NPM_SHA256  $tgz" | sha256sum --check --status \
    || die "$DUCKDB_NPM_PACKAGE has checksum $(sha256sum "$tgz" | cut -d' ' -f1), expected $DUCKDB_NPM_SHA256: not installing it"
  tar -xzf "$tgz" -C "$work" package/libduckdb.so package/LICENSE
  echo "$DUCKDB_LIB_SHA256  $work/package/libduckdb.so" | sha256sum --check --status \
    || die "libduckdb.so in $DUCKDB_NPM_PACKAGE has an unexpected checksum: not installing it"
  rm -rf "$DUCKDB_LIB_DIR" && mkdir -p "$DUCKDB_LIB_DIR"
  mv "$work/package/libduckdb.so" "$work/package/LICENSE" "$DUCKDB_LIB_DIR/"
  duckdb_stamp > "$DUCKDB_LIB_DIR/satlas-duckdb.stamp"
  rm -rf "$work"
  say "DuckDB ready: $lib"
}

# The PyPI duckdb client (the version satlas links), for the test that opens an atlas from Python.
install_python_duckdb() {
  local venv="$SATLAS_CACHE/python-duckdb-$DUCKDB_VERSION"
  [ -x "$venv/bin/python" ] && "$venv/bin/python" -c "import duckdb" 2>/dev/null && return 0
  say "installing the PyPI duckdb==$DUCKDB_VERSION client under $venv"
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet "duckdb==$DUCKDB_VERSION"
}

# The three downloads are independent (separate directories): fetch them side by side and fail if
# any of them failed.
install_debian_packages
pids=()
install_libtorch & pids+=($!)
install_duckdb & pids+=($!)
install_python_duckdb & pids+=($!)
failed=0
for pid in "${pids[@]}"; do wait "$pid" || failed=1; done
[ "$failed" -eq 0 ] || die "set-up failed (see the messages above); nothing half-installed is kept"
