#!/bin/bash
# The guest kernel offers CUSE: /dev/cuse is the misc character device 10,203.
set -eu
[[ -c /dev/cuse ]] || { echo "FAIL: /dev/cuse is not a character device"; exit 1; }
majmin=$(stat -c '%t,%T' /dev/cuse)
[[ $majmin == "a,cb" ]] || { echo "FAIL: /dev/cuse is $majmin (hex), expected 10,203"; exit 1; }
echo "PASS: /dev/cuse is char 10,203"
