#!/usr/bin/env bash
# Compiles the demo's plain-Kotlin parity package (no android.* imports) and its JUnit 4 tests on the JVM, then runs
# them. The Android app itself needs Google's Maven to build; this part needs only the Kotlin compiler from the npm
# registry (cached outside the repository) and JUnit 4 from Debian.
#
#   android_demo/jvm-test.sh            build if needed, run the JUnit tests, print their summary
#   android_demo/jvm-test.sh --build    build if needed, print the classpath of the parity package (for CrossCheck)
set -euo pipefail

KOTLIN_VERSION=2.4.20
here=$(cd "$(dirname "$0")" && pwd)
cache=${GRU_EDGE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/gru-edge}
kotlin_home=$cache/kotlin-compiler-$KOTLIN_VERSION
main_src=$here/app/src/main/java/dev/gruedge/demo/parity
test_src=$here/app/src/test/java/dev/gruedge/demo/parity

log() { echo "jvm-test: $*" >&2; }

if [ ! -x "$kotlin_home/bin/kotlinc" ]; then
  log "fetching kotlin-compiler $KOTLIN_VERSION from the npm registry into $kotlin_home"
  mkdir -p "$cache"
  tmp=$(mktemp -d)
  (cd "$tmp" && npm pack --silent "kotlin-compiler@$KOTLIN_VERSION" >/dev/null)
  tar -xzf "$tmp/kotlin-compiler-$KOTLIN_VERSION.tgz" -C "$tmp"
  rm -rf "$kotlin_home" && mv "$tmp/package" "$kotlin_home"
  chmod +x "$kotlin_home"/bin/*
  rm -rf "$tmp"
fi

junit=/usr/share/java/junit4.jar
hamcrest=/usr/share/java/hamcrest-core.jar
if [ ! -f "$junit" ] || [ ! -f "$hamcrest" ]; then
  log "installing JUnit 4 from Debian (apt-get install junit4)"
  (apt-get install -y -qq junit4 >/dev/null 2>&1) || (apt-get update -qq && apt-get install -y -qq junit4 >/dev/null)
fi

stdlib=$kotlin_home/lib/kotlin-stdlib.jar
# Rebuild only when the sources change: kotlinc takes ~10 s per compilation.
stamp=$(cat "$main_src"/*.kt "$test_src"/*.kt | sha256sum | cut -c1-16)
build=$cache/parity-build/$stamp
if [ ! -f "$build/tests.jar" ]; then
  log "compiling the parity package and its tests with kotlinc $KOTLIN_VERSION"
  mkdir -p "$build"
  "$kotlin_home/bin/kotlinc" -nowarn "$main_src"/*.kt -d "$build/parity.tmp.jar" 2>&1 | grep -v "^warning" >&2 || true
  [ -f "$build/parity.tmp.jar" ] || { log "compiling the parity package failed"; exit 1; }
  mv "$build/parity.tmp.jar" "$build/parity.jar"
  "$kotlin_home/bin/kotlinc" -nowarn -cp "$build/parity.jar:$junit:$hamcrest" "$test_src"/*.kt \
    -d "$build/tests.tmp.jar" 2>&1 | grep -v "^warning" >&2 || true
  [ -f "$build/tests.tmp.jar" ] || { log "compiling the tests failed"; exit 1; }
  mv "$build/tests.tmp.jar" "$build/tests.jar"
fi

classpath=$build/parity.jar:$stdlib
if [ "${1:-}" = "--build" ]; then
  echo "$classpath"
  exit 0
fi

classes=$(cd "$test_src" && ls *Test.kt | sed 's/\.kt$//; s/^/dev.gruedge.demo.parity./')
echo "JUnit 4 on the JVM: the Kotlin parity core of android_demo (kotlinc $KOTLIN_VERSION)"
# shellcheck disable=SC2086
java -Ddemo.assets="$here/app/src/main/assets/gru_edge" -cp "$classpath:$build/tests.jar:$junit:$hamcrest" \
  org.junit.runner.JUnitCore $classes
