#!/usr/bin/env bash
# Install the Debian packages glmpipe builds against. Idempotent: when every
# package is already present it only runs dpkg-query and exits.
set -euo pipefail
PKGS=(build-essential pkg-config
      libzmq3-dev       # transport: ZeroMQ PUSH/PULL
      libmsgpack-dev    # wire format: msgpack-c
      libcjson-dev      # JSON (requests, tokenizer.json, config.json)
      libuv1-dev        # gateway event loop
      libhttp-parser-dev  # gateway HTTP/1.1 parser (no .pc file: Makefile NOPC_LIBS)
      libpcre2-dev      # pre-tokenizer regexes (\p{L}, lookahead, JIT)
      libutf8proc-dev   # NFC normalizer, Unicode properties
      python3 python3-venv)  # test tooling only
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO=sudo
echo "install-deps: installing ${missing[*]}" >&2
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
