#!/usr/bin/env bash
# tests/gpu/bundle.sh [DIR] — what make gpu-check needs on a GPU machine that
# lacks the build's Debian packages (the device machines lent to sessions):
# the binaries built here (with nvcc: the CUDA backend inside) and the shared
# libraries they load beyond the C/C++ runtime. Then, on the GPU machine:
#   GLM_GPU_PREBUILT=DIR bash tests/gpu/gpu_check.sh
# DIR defaults to .gpu (git-ignored). Builds first (make -j2 all).
set -eu
cd "$(dirname "$0")/../.."
D=${1:-.gpu}
make -j2 all >/dev/null
make -s nccl-check >/dev/null
ls build/obj/engine/cuda/*.cu.o >/dev/null 2>&1 || { echo "bundle: this build has no CUDA objects (no nvcc?)" >&2; exit 1; }
rm -rf "$D"; mkdir -p "$D/bin" "$D/tests" "$D/lib"
cp build/bin/glm-engine build/bin/glm-msg build/bin/glm-mkmodel "$D/bin/"
cp build/tests/test_cuda build/gpu/nccl_check "$D/tests/"
for f in "$D"/bin/* "$D"/tests/*; do
    ldd "$f" | awk '$3 ~ /^\// {print $3}'
done | sort -u | while read -r lib; do
    case "$(basename "$lib")" in
        libc.so*|libm.so*|libstdc++.so*|libgcc_s.so*|libpthread.so*|libdl.so*|librt.so*|libresolv.so*|ld-linux*) ;;
        *) cp -L "$lib" "$D/lib/" ;;
    esac
done
du -sh "$D"
