"""``python -m export.quality``: the music-quality harness (``export.quality.run``)."""

from export.quality.run import main

raise SystemExit(main())
