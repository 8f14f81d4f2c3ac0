#!/usr/bin/env bash
# open3d needs the system library libusb-1.0. Install it where apt and root are available;
# elsewhere say so and go on: geom's core never needs open3d.
set -u
if ldconfig -p 2>/dev/null | grep -q 'libusb-1.0.so'; then
  exit 0
fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "Installing libusb-1.0-0 for open3d..."
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libusb-1.0-0) >/dev/null 2>&1 \
    || echo "apt-get could not install libusb-1.0-0; open3d will not import (geom works without it)"
else
  echo "libusb-1.0 missing and no root/apt: open3d will not import (geom works without it)"
fi
exit 0
