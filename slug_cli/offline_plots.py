"""An HTML template for `dvc plots show/diff` that works offline.

DVC's default page loads Vega, Vega-Lite and Vega-Embed from a CDN, so it renders nothing without
network access. This writes a template with those libraries inlined (taken from the
vl-convert-python wheel, which bundles them); `.dvc/config` points `plots.html_template` at it.

    python -m slug_cli.offline_plots [.dvc/plots/offline.html]
"""

from __future__ import annotations

import sys
from pathlib import Path

from pipeline.io import write_text

VEGA_LITE = "5.20"  # DVC's plot templates are Vega-Lite 5 specifications

PAGE = """<!DOCTYPE html>
<html>
<head>
    {refresh_tag}
    <meta charset="utf-8">
    <title>SLUG plots (offline)</title>
    <script type="text/javascript">
%s
    </script>
    <style>
        body { font-family: sans-serif; }
        table { border-spacing: 15px; }
    </style>
</head>
<body>
    {plot_divs}
</body>
</html>
"""


def write_template(path: str | Path) -> Path:
    import vl_convert as vlc

    bundle = vlc.javascript_bundle(vl_version=VEGA_LITE)
    path = Path(path)
    write_text(path, PAGE.replace("%s", bundle.replace("</script", "<\\/script")))
    return path


if __name__ == "__main__":
    print(write_template(sys.argv[1] if len(sys.argv) > 1 else ".dvc/plots/offline.html"))
