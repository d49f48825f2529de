#!/bin/bash
# Every long option `tpmrmd --help` lists is described in man/tpmrmd.8.scd, and the page describes no option
# tpmrmd does not have.
# Usage: check-man-options.sh TPMRMD MAN_SCD
set -eu
tpmrmd=$1 page=$2
# --config /dev/null: the machine's /etc/tpmrmd/tpmrmd.conf has no say in --help.
help_opts=$("$tpmrmd" --config /dev/null --help | grep -oE '^ +(-[a-zA-Z],)?--[a-z0-9-]+' | grep -oE -- '--[a-z0-9-]+' | sort -u)
# Option entries in the page: lines starting with *--name* (one entry may name several: *--a* X, *--b* Y).
man_opts=$(grep -E '^\*--' "$page" | grep -oE -- '\*--[a-z0-9-]+\*' | tr -d '*' | sort -u)
[[ -n $help_opts && -n $man_opts ]] || { echo "FAIL: no options found (help: ${#help_opts}, page: ${#man_opts})"; exit 1; }
missing=$(comm -23 <(echo "$help_opts") <(echo "$man_opts"))
extra=$(comm -13 <(echo "$help_opts") <(echo "$man_opts"))
[[ -z $missing ]] || echo "FAIL: in --help but not in $page: $missing"
[[ -z $extra ]] || echo "FAIL: in $page but not in --help: $extra"
[[ -z $missing && -z $extra ]] || exit 1
echo "PASS: $(echo "$help_opts" | wc -l) options"
