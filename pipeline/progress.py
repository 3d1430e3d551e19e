"""Progress bars on loops a person waits for; silent when output is not a terminal (CI, logs)."""

from tqdm.auto import tqdm


def progress(iterable=None, **kw):
    kw.setdefault("leave", False)
    kw.setdefault("disable", None)  # None: off when stderr is not a TTY
    return tqdm(iterable, **kw)
