#!/usr/bin/env bash
# The device kit's runner, for a machine with a GPU and its driver but no Deno, no Node and no
# network (made by `deno task gpu:pack`, which copies this file into the kit folder).
#
#   bash .gpu-kit/run.sh                 # adapter, what a dispatch costs (bench:dispatch), then
#                                        # the benchmark configurations, each with
#                                        # the step replayed and eager (UGATIT_WEBGPU_REPLAY=off),
#                                        # then 256 px with float16 tiles (UGATIT_WEBGPU_F16=on)
#   bash .gpu-kit/run.sh bench FLAGS...  # one `deno task bench` run on webgpu with these flags
#   bash .gpu-kit/run.sh dispatch FLAGS... # one `deno task bench:dispatch` run with these flags
#   bash .gpu-kit/run.sh adapter         # the adapter only
#
# It unpacks Deno and Debian's Vulkan loader (libvulkan1) into $UGATIT_KIT_TMP (/tmp/ugatit-kit),
# points Vulkan at the NVIDIA driver's ICD (/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json on
# our lent machines; else what VK_DRIVER_FILES says), prints the adapter and runs the bundled
# benchmark on webgpu with the PyTorch peer on CUDA (`python3` with torch), alternating.
set -euo pipefail
kit=$(cd "$(dirname "$0")" && pwd)
work=${UGATIT_KIT_TMP:-/tmp/ugatit-kit}
mkdir -p "$work"
deno="$work/deno"

if [ ! -x "$deno" ]; then
  if command -v xz >/dev/null; then
    xz -dc "$kit/deno.xz" >"$deno.tmp"
  else # Python's lzma reads the same format
    python3 -c 'import lzma, shutil, sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2], "wb"))' \
      "$kit/deno.xz" "$deno.tmp"
  fi
  chmod +x "$deno.tmp" && mv "$deno.tmp" "$deno"
fi

# The Vulkan loader: the system's where it has one, else (or with UGATIT_KIT_OWN_LOADER=1) the
# carried Debian package's.
if [ -n "${UGATIT_KIT_OWN_LOADER:-}" ] || ! ldconfig -p 2>/dev/null | grep -q 'libvulkan\.so\.1 '; then
  if [ ! -d "$work/vulkan" ]; then
    deb=$(ls "$kit"/libvulkan1_*.deb | head -n 1)
    dpkg -x "$deb" "$work/vulkan.tmp" && mv "$work/vulkan.tmp" "$work/vulkan"
  fi
  lib=$(dirname "$(find "$work/vulkan" -name 'libvulkan.so.1' | head -n 1)")
  export LD_LIBRARY_PATH="$lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  echo "vulkan loader: $lib/libvulkan.so.1 (carried)"
fi
# NVIDIA's Vulkan driver (libGLX_nvidia.so.0) needs libglvnd's dispatch libraries: the carried
# ones where the system has none.
if ! ldconfig -p 2>/dev/null | grep -q 'libGLdispatch\.so\.0 '; then
  if [ ! -d "$work/gl" ]; then
    for deb in "$kit"/lib{glvnd0,glx0,egl1,gl1,opengl0,gles2}_*.deb; do
      [ -f "$deb" ] && dpkg -x "$deb" "$work/gl.tmp"
    done
    mv "$work/gl.tmp" "$work/gl"
  fi
  export LD_LIBRARY_PATH="$work/gl/usr/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
fi
# The NVIDIA driver's Vulkan ICD and the libraries it names.
nvidia=/usr/local/nvidia
if [ -z "${VK_DRIVER_FILES:-}" ] && [ -f "$nvidia/share/vulkan/icd.d/nvidia_icd.json" ]; then
  export VK_DRIVER_FILES="$nvidia/share/vulkan/icd.d/nvidia_icd.json"
fi
for d in "$nvidia/lib64" "$nvidia/lib"; do
  [ -d "$d" ] && export LD_LIBRARY_PATH="${LD_LIBRARY_PATH:+$LD_LIBRARY_PATH:}$d"
done
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-$(mktemp -d)}"
export DENO_DIR="$work/deno_dir" DENO_NO_UPDATE_CHECK=1

if command -v nvidia-smi >/dev/null; then
  echo "gpu: $(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader)"
fi
echo "vulkan driver files: ${VK_DRIVER_FILES:-the loader default}"

bench() {
  "$deno" run --allow-all --no-config "$kit/bench.js" --backend webgpu --vs-torch \
    --torch-device cuda "$@"
}

case "${1:-all}" in
adapter)
  "$deno" run --allow-all --no-config "$kit/bench.js" --backend webgpu --adapter
  ;;
bench)
  shift
  bench "$@"
  ;;
dispatch)
  shift
  "$deno" run --allow-all --no-config "$kit/dispatch.js" "$@"
  ;;
all)
  # What one dispatch costs this GPU, alone and merged (seconds), before the long runs.
  "$deno" run --allow-all --no-config "$kit/dispatch.js"
  # The paper's light structure at 256 and 128 px, and the bare recipe's size; each replayed
  # (the default) and eager, so that one run gives both rows on the same card.
  for mode in on off; do
    UGATIT_WEBGPU_REPLAY=$mode bench --light --img_size 256 --ch 64 --n_res 4 --n_dis 6 --warmup 3 \
      --steps 10 --profile
    UGATIT_WEBGPU_REPLAY=$mode bench --light --img_size 128 --ch 64 --n_res 4 --n_dis 5 --warmup 3 \
      --steps 10
    UGATIT_WEBGPU_REPLAY=$mode bench --light --img_size 64 --ch 32 --n_res 4 --n_dis 4 --warmup 3 \
      --steps 20
  done
  # Last, so that the rows above come first: the convolutions' float16 tiles at 256 px, replayed.
  UGATIT_WEBGPU_F16=on bench --light --img_size 256 --ch 64 --n_res 4 --n_dis 6 --warmup 3 \
    --steps 10 --profile
  ;;
*)
  echo "usage: run.sh [all | bench FLAGS... | dispatch FLAGS... | adapter]" >&2
  exit 2
  ;;
esac
