#!/usr/bin/env bash
# Builds edgeml-agent_VERSION_ARCH.deb and edgeml-hub_VERSION_ARCH.deb (amd64, arm64) into artifacts/packages from
# what is already published: the native agent in artifacts/publish/RID (./build.sh publish RID) and the self-contained
# hub and CLI in artifacts/publish-hub/RID/{hub,cli}. Called by `./build.sh package` (docs/packaging.md):
#   packaging/build-deb.sh VERSION
# A staged tree per package, built with `dpkg-deb --root-owner-group` (no fakeroot, no debhelper); Depends from
# dpkg-shlibdeps; every package then checked with lintian (errors fail the build; warnings are listed in
# docs/packaging.md with the reason each is left).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
VERSION=${1:?usage: packaging/build-deb.sh VERSION}
OUT="$ROOT/artifacts/packages"
STAGE="$ROOT/artifacts/deb-stage"
MAINTAINER="EdgeMl maintainers <maintainers@users.noreply.r-seed-a655c902.example>"
HOMEPAGE_DOC="file:///usr/share/doc"

rm -rf "$STAGE" && mkdir -p "$STAGE" "$OUT"
rm -f "$OUT"/edgeml-agent_*.deb "$OUT"/edgeml-hub_*.deb

# arch, dpkg-shlibdeps environment (the cross objdump for arm64).
deb_arch() { case "$1" in linux-x64) echo amd64 ;; linux-arm64) echo arm64 ;; esac; }
shlibs() { # RID FILE… → "libc6 (>= 2.34), …"
  local rid=$1; shift
  local env=()
  [[ "$rid" == linux-arm64 ]] && env=(DEB_HOST_ARCH=arm64 DEB_HOST_GNU_TYPE=aarch64-linux-gnu DEB_HOST_MULTIARCH=aarch64-linux-gnu)
  local work; work=$(mktemp -d)
  mkdir -p "$work/debian"
  printf 'Source: edgeml\n\nPackage: edgeml\nArchitecture: any\n' > "$work/debian/control"
  (cd "$work" && env "${env[@]}" dpkg-shlibdeps -O "$@" 2>/dev/null) | sed -n 's/^shlibs:Depends=//p'
  rm -rf "$work"
}

# Files every package carries: copyright, changelog (native package: changelog.gz), the maintainer scripts.
common() { # DIR PACKAGE SRC
  local dir=$1 pkg=$2 src=$3
  install -d "$dir/DEBIAN" "$dir/usr/share/doc/$pkg"
  install -m 0644 packaging/copyright "$dir/usr/share/doc/$pkg/copyright"
  sed "s/@PACKAGE@/$pkg/; s/@VERSION@/$VERSION/" packaging/changelog | gzip -9n > "$dir/usr/share/doc/$pkg/changelog.gz"
  chmod 0644 "$dir/usr/share/doc/$pkg/changelog.gz"
  for script in postinst prerm postrm; do install -m 0755 "packaging/$src/$script" "$dir/DEBIAN/$script"; done
  # What lintian reports and cannot be changed here (third-party libraries linked statically), each with its reason.
  install -D -m 0644 "packaging/$src/lintian-overrides" "$dir/usr/share/lintian/overrides/$pkg"
}

finish() { # DIR PACKAGE ARCH DEPENDS SECTION SHORT LONG
  local dir=$1 pkg=$2 arch=$3 depends=$4 section=$5 short=$6 long=$7
  (cd "$dir" && find etc -type f | sed 's:^:/:' | sort > DEBIAN/conffiles)
  (cd "$dir" && find . -path ./DEBIAN -prune -o -type f -print | sed 's:^\./::' | sort | xargs md5sum > DEBIAN/md5sums)
  local size; size=$(du -k -s --exclude=DEBIAN "$dir" | cut -f1)
  {
    echo "Package: $pkg"
    echo "Version: $VERSION"
    echo "Architecture: $arch"
    echo "Maintainer: $MAINTAINER"
    echo "Installed-Size: $size"
    echo "Depends: $depends"
    echo "Section: $section"
    echo "Priority: optional"
    echo "Description: $short"
    printf '%s\n' "$long" | fold -s -w 78 | sed 's/ *$//; s/^/ /'
  } > "$dir/DEBIAN/control"
  chmod 0644 "$dir/DEBIAN/control" "$dir/DEBIAN/conffiles" "$dir/DEBIAN/md5sums"
  dpkg-deb --root-owner-group -Zxz --build "$dir" "$OUT/${pkg}_${VERSION}_${arch}.deb" >/dev/null
}

agent() { # RID
  local rid=$1 arch; arch=$(deb_arch "$1")
  local pub="$ROOT/artifacts/publish/$rid" dir="$STAGE/edgeml-agent_$arch" lib
  [[ -x "$pub/edgeml-agent" ]] || { echo "build-deb: $pub/edgeml-agent is missing (./build.sh publish $rid)" >&2; exit 1; }
  lib="$dir/usr/lib/edgeml-agent"
  install -d "$lib/models" "$dir/usr/bin" "$dir/lib/systemd/system" "$dir/etc/edgeml"
  install -m 0755 "$pub/edgeml-agent" "$lib/edgeml-agent"
  for so in "$pub"/*.so; do install -m 0644 "$so" "$lib/"; done
  install -m 0644 "$pub"/models/*.edgepkg "$lib/models/"
  ln -s ../lib/edgeml-agent/edgeml-agent "$dir/usr/bin/edgeml-agent"
  install -m 0644 packaging/agent/edgeml-agent.service "$dir/lib/systemd/system/edgeml-agent.service"
  install -m 0644 packaging/agent/agent.json "$dir/etc/edgeml/agent.json"
  common "$dir" edgeml-agent agent
  install -m 0644 packaging/agent/README.Debian.md "$dir/usr/share/doc/edgeml-agent/README.md"
  local depends; depends="$(shlibs "$rid" "$lib/edgeml-agent" "$lib"/*.so), libssl3, passwd"
  finish "$dir" edgeml-agent "$arch" "$depends" misc \
    "edge inference runtime: ONNX models on sensor data" \
    "EdgeMl's agent as a systemd service: a native (ahead-of-time compiled) edgeml-agent that reads sensors (I2C accelerometers and environment sensors, GPIO, replayed recordings, simulators), runs quantized ONNX models on them with ONNX Runtime (bundled), acts on the results through GPIO and keeps every prediction in a local outbox it delivers to an EdgeMl hub over MQTT. Ships a vibration-fault model, /etc/edgeml/agent.json and a hardened unit with a watchdog that is fed only while the pipeline makes progress."
}

hub() { # RID
  local rid=$1 arch; arch=$(deb_arch "$1")
  local pub="$ROOT/artifacts/publish-hub/$rid" dir="$STAGE/edgeml-hub_$arch" lib f
  for f in hub/edgeml-hub cli/edgeml; do
    [[ -x "$pub/$f" ]] || { echo "build-deb: $pub/$f is missing (./build.sh package publishes it)" >&2; exit 1; }
  done
  lib="$dir/usr/lib/edgeml-hub"
  install -d "$lib" "$dir/usr/bin" "$dir/lib/systemd/system" "$dir/etc/edgeml"
  # Everything the two publishes hold (the single-file programs, native libraries such as ONNX Runtime for the CLI's
  # model toolchain, the hub's static web assets): one copy of each, and the two must agree on any file both have.
  for f in "$pub"/hub/* "$pub"/cli/*; do
    [[ -f "$f" && "$f" != *.pdb ]] || continue
    if [[ -e "$lib/$(basename "$f")" ]]; then
      cmp -s "$f" "$lib/$(basename "$f")" || { echo "build-deb: hub and CLI publish different $(basename "$f")" >&2; exit 1; }
    elif [[ "$f" == */edgeml-hub || "$f" == */edgeml ]]; then
      install -m 0755 "$f" "$lib/"
    else
      install -m 0644 "$f" "$lib/"
    fi
  done
  # Folders beside the hub (the dashboard's DashboardFiles/, found through AppContext.BaseDirectory; wwwroot/).
  for f in "$pub"/hub/*/; do
    [[ -d "$f" ]] || continue
    cp -r "$f" "$lib/"
    find "$lib/$(basename "$f")" -type d -exec chmod 0755 {} + -o -type f -exec chmod 0644 {} +
  done
  ln -s ../lib/edgeml-hub/edgeml-hub "$dir/usr/bin/edgeml-hub"
  ln -s ../lib/edgeml-hub/edgeml "$dir/usr/bin/edgeml"
  install -m 0644 packaging/hub/edgeml-hub.service "$dir/lib/systemd/system/edgeml-hub.service"
  install -m 0644 packaging/hub/hub.json "$dir/etc/edgeml/hub.json"
  common "$dir" edgeml-hub hub
  install -m 0644 packaging/hub/README.Debian.md "$dir/usr/share/doc/edgeml-hub/README.md"
  local depends; depends="$(shlibs "$rid" "$lib"/edgeml-hub "$lib"/edgeml $(ls "$lib"/*.so 2>/dev/null)), libssl3, passwd"
  finish "$dir" edgeml-hub "$arch" "$depends" net \
    "EdgeMl fleet hub and the edgeml operator CLI" \
    "The hub EdgeMl agents report to: an embedded MQTT broker that admits only enrolled devices, a store of their predictions, health and drift sketches, a signed model registry with staged rollouts, and a REST API with viewer and operator tokens, run as a hardened systemd service. Also the edgeml command line for operators (devices, tokens, models, rollouts, the model toolchain). Self-contained .NET programs: no .NET runtime needed."
}

for rid in linux-x64 linux-arm64; do
  agent "$rid"
  hub "$rid"
done

# lintian: errors fail the build; the warnings and infos left are explained in docs/packaging.md.
if command -v lintian >/dev/null; then
  rc=0
  lintian --tag-display-limit 0 "$OUT"/*.deb > "$OUT/lintian.txt" 2>&1 || rc=$?
  cat "$OUT/lintian.txt" >&2
  if grep -q '^E: ' "$OUT/lintian.txt"; then echo "build-deb: lintian found errors (above)" >&2; exit 1; fi
  [[ $rc -le 2 ]] || { echo "build-deb: lintian failed to run (exit $rc)" >&2; exit 1; }
fi

ls -l "$OUT"/*.deb | awk '{ printf "%s %.1f MB\n", $NF, $5 / 1048576 }' >&2
