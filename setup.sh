#!/usr/bin/env bash
# Sets ConvLens up on this machine; safe to run again. The README's two commands start with it.
#
#   ./setup.sh          .venv with the requirements, and Debian's dataset-fashion-mnist (the
#                       Fashion-MNIST train split that training needs; the test split is bundled)
#   ./setup.sh --test   the same, with the test tools and Debian's Chromium for the browser tests
#
# Debian packages are installed with apt-get when this runs as root; otherwise one line says
# what to install. Only the package registries (PyPI, Debian) are needed, no other internet.
set -euo pipefail
cd "$(dirname "$0")"

test_tools=false
case "${1:-}" in
    --test) test_tools=true ;;
    "") ;;
    *) echo "usage: ./setup.sh [--test]" >&2; exit 2 ;;
esac

python3 -m venv .venv
if $test_tools; then
    .venv/bin/pip install -q -r requirements.txt -e '.[test]'
else
    .venv/bin/pip install -q -r requirements.txt -e .
fi

# The folder convlens.data reads (the package's folder, or $CONVLENS_FASHION_MNIST_DIR).
dataset_dir="${CONVLENS_FASHION_MNIST_DIR:-/usr/share/datasets/fashion-mnist}"
missing=()
if ! ls "$dataset_dir"/train-images-idx3-ubyte* >/dev/null 2>&1; then
    missing+=(dataset-fashion-mnist)
fi
if $test_tools && ! command -v chromium >/dev/null; then
    missing+=(chromium)
fi
if [ ${#missing[@]} -eq 0 ]; then
    exit 0
fi
if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
    apt-get update -q
    # --reinstall: the package may be installed with its folder removed or hidden.
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --reinstall "${missing[@]}"
    exit 0
fi
echo "setup.sh: install Debian's ${missing[*]} (sudo apt-get install ${missing[*]}), then run it again." >&2
if $test_tools; then
    exit 1  # the tests need both
fi
