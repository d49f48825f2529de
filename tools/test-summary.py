#!/usr/bin/env python3
"""Sums meson's JUnit logs (gtest suites report each case) into one line: 'tests: N passed, N failed'.

Exits non-zero when a log is missing, when anything failed, or when no test ran at all.
"""
import re
import sys
import xml.etree.ElementTree as ET

# Meson copies each test's output into the log verbatim; a guest console or a TPM byte dump can put
# characters there that XML 1.0 forbids, which must not turn a passing run into an unreadable log.
NOT_XML_CHAR = re.compile("[^\u0009\u000a\u000d\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def parse(path):
    with open(path, "rb") as f:
        text = f.read().decode("utf-8", errors="replace")
    text = re.sub(r"^<\?xml[^>]*\?>", "", text.lstrip())
    return ET.fromstring(NOT_XML_CHAR.sub("\ufffd", text))


passed = failed = skipped = 0
ok = True
for path in sys.argv[1:]:
    try:
        root = parse(path)
    except (OSError, ET.ParseError) as e:
        print(f"test-summary: cannot read {path}: {e}", file=sys.stderr)
        ok = False
        continue
    for case in root.iter("testcase"):
        if case.find("failure") is not None or case.find("error") is not None:
            failed += 1
            print(f"FAILED: {case.get('classname')}.{case.get('name')} ({path})")
        elif case.find("skipped") is not None:
            skipped += 1
        else:
            passed += 1

line = f"tests: {passed} passed, {failed} failed"
if skipped:
    line += f", {skipped} skipped"
print(line)
sys.exit(0 if ok and failed == 0 and passed > 0 else 1)
