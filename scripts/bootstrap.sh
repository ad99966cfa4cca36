#!/usr/bin/env bash
# Installs what imgcls needs on Debian 12, and only what is missing: the -dev packages it builds
# against, the packages its tests take real photos from, and the Python venv for the test harness and
# the model tools. Safe to run again: it does nothing when everything is there.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(
  build-essential cmake pkg-config clang python3-venv time
  libturbojpeg0-dev libspng-dev libexif-dev
  libjansson-dev libmicrohttpd-dev libcurl4-openssl-dev libsqlite3-dev libssl-dev libcmocka-dev
  libdnnl-dev   # oneDNN 2.6, the network runtime (src/engine/dnnl_net.c); brings libgomp
  libxml2-dev   # AWS XML responses (S3, Auto Scaling, CloudWatch): src/aws/aws_xml.c
  darknet   # ships data/dog.jpg and data/eagle.jpg, real photos for the tests
  # photographs for the held-out set int8 and bf16 are checked on (tools/model/photos.py); calibration
  # uses scikit-image's and matplotlib's, so no photo is in both
  mate-backgrounds lomiri-wallpapers-16.04
  # headless browser for tests/e2e/test_dashboard.py, which renders GET /dashboard and reads the DOM
  # its script builds from /metrics (the test skips, saying so, without it)
  chromium
  # clang's sanitizer and libFuzzer runtimes (make test-fuzz, make test-tsan): only "recommended" by
  # clang-14, so --no-install-recommends leaves them out; llvm gives llvm-symbolizer for file:line in
  # sanitizer reports.
  libclang-rt-14-dev llvm
)

missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "bootstrap: installing ${missing[*]}"
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# The venv is rebuilt when tools/requirements.txt changes.
stamp=.venv/.requirements.sha256
want=$(sha256sum tools/requirements.txt | cut -d' ' -f1)
if [ ! -x .venv/bin/python ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "bootstrap: setting up .venv"
  python3 -m venv .venv
  .venv/bin/pip install -q --upgrade pip
  .venv/bin/pip install -q -r tools/requirements.txt
  echo "$want" > "$stamp"
fi
