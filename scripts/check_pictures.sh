#!/usr/bin/env bash
# What a person sees: renders the report and each picture with headless Chromium (Debian package
# `chromium`) to PNG screenshots, and checks that each page loads with no console message and no
# failed request, and that each screenshot is not blank (many colours, not one flat background).
#   bash scripts/check_pictures.sh [FILE...]    (default: out/report.html and out/plots/*)
# Screenshots go to out/screenshots/ (not committed): look at them. Not part of the test suite
# (Chromium takes seconds per page); exit status 1 when any check fails.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v chromium >/dev/null || {
  echo "chromium is not installed: apt-get update && apt-get install chromium" >&2
  exit 2
}
files=("$@")
if [ ${#files[@]} -eq 0 ]; then
  files=(out/report.html)
  shopt -s nullglob
  files+=(out/plots/*.svg out/plots/*.png)
fi
mkdir -p out/screenshots
failed=0
for file in "${files[@]}"; do
  [ -f "$file" ] || { echo "FAIL $file: no such file"; failed=1; continue; }
  name=$(basename "$file")
  shot="out/screenshots/${name%.*}.${name##*.}.png"
  profile=$(mktemp -d)
  height=1400
  [[ "$file" == *.html ]] && height=9000
  log=$(timeout 120 chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
    --disable-background-networking --disable-component-update --disable-sync \
    --user-data-dir="$profile" --enable-logging=stderr --v=0 --hide-scrollbars \
    --window-size=1100,$height --virtual-time-budget=5000 \
    --screenshot="$PWD/$shot" "file://$PWD/$file" 2>&1 >/dev/null || true)
  rm -rf "$profile"
  # Page-level problems: console messages (the pages have no script, so any is a problem) and
  # resources that failed to load (a reference to something outside the file).
  problems=$(grep -E 'CONSOLE|Failed to load resource|net::ERR_' <<<"$log" || true)
  if [ ! -s "$shot" ]; then
    echo "FAIL $file: no screenshot"; echo "$log" | tail -5; failed=1; continue
  fi
  # Anything the page would fetch from elsewhere (the report must be self-contained).
  if [[ "$file" != *.png ]]; then
    external=$(grep -oE '(src|href)="(https?:)?//[^"]*"|url\((https?:)?//[^)]*\)|@import' "$file" | head -3 || true)
    [ -n "$external" ] && problems+=$'\n'"refers to external resources: $external"
  fi
  if [ -n "$problems" ]; then
    echo "FAIL $file: console or network errors:"; echo "$problems"; failed=1
  fi
  if ! python3 scripts/png_colours.py "$shot" 50; then
    echo "FAIL $file: the screenshot $shot looks blank"; failed=1
  else
    echo "ok   $file -> $shot"
  fi
done
exit $failed
