#!/bin/sh
# Tests for greet: each case is the arguments and the exact expected output.
set -eu
bin=$1
fail=0
check() {
    expected=$1; shift
    actual=$("$bin" "$@")
    if [ "$actual" = "$expected" ]; then
        echo "ok   greet $*"
    else
        echo "FAIL greet $*: expected '$expected', got '$actual'"
        fail=1
    fi
}
check "Hello, world!"
check "Hello, Airlock!" Airlock
check "Hello, world!" ""
check "greet 1.0.0" --version
exit $fail
