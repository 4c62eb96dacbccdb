"""The headless browser every browser test and browser benchmark drives (DESIGN.md, platform notes)."""
from __future__ import annotations

CHROMIUM = "/usr/bin/chromium"  # Debian's package; `make test` installs it (never `playwright install`)
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"]
