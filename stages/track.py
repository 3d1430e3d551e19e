"""Stage track@<name>: hash one model reference that is a local file or folder (``refs`` in
params.yaml) into ``data/refs/<name>/ref.json``; the stages that load the model depend on that
folder (``pipeline.refs`` says why a reference is tracked this way).

    python -m stages.track clip models/tiny-clip.safetensors
"""

from __future__ import annotations

import sys

from pipeline import refs
from pipeline.entry import run
from pipeline.errors import ParamsError
from pipeline.io import write_json
from pipeline.params import Params


def main(p: Params) -> None:
    if len(sys.argv) != 3:
        raise ParamsError("usage: python -m stages.track NAME PATH")
    name, path = sys.argv[1:]
    record = refs.fingerprint(name, path)
    write_json(refs.track_dir(name) / refs.RECORD, record)
    print(f"track: {name} = {path} ({record['kind']}, {record['bytes'] / 1e6:.1f} MB, "
          f"sha256 {record['sha256'][:12]})")


if __name__ == "__main__":
    run(main)
