"""A progress bar with ETA for long runs (tqdm when installed), or the plain iterable."""


def progress_bar(items, enabled: bool = True, unit: str = "it", total: int | None = None):
    if not enabled:
        return items
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return items
    return tqdm(items, unit=unit, dynamic_ncols=True, total=total)
