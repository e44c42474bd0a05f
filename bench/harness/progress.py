"""A progress bar with ETA for long runs (tqdm when installed), or the plain iterable."""


def progress_bar(items=None, enabled: bool = True, unit: str = "it", total: int | None = None):
    """tqdm over `items`; with no items, a bar the caller moves with `.update(n)`. When disabled (or without
    tqdm) `items` itself, so callers test for `update` before they call it."""
    if not enabled:
        return items
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return items
    return tqdm(items, unit=unit, dynamic_ncols=True, total=total)
