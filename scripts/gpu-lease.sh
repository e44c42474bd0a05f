#!/usr/bin/env bash
# One call on a lent GPU machine that has no package index: install this checkout against the machine's own
# torch and triton, run one highway-bench command inside a hard time box, and pack what it wrote for the trip
# back. Made for leases of minutes in calls of at most ten (see the README's "On a GPU").
#
#   bash scripts/gpu-lease.sh MINUTES DIR COMMAND...
#   bash scripts/gpu-lease.sh 8 reports/gallery/h200 highway-bench campaign --out reports/gallery/h200 --budget-minutes 7 --no-report
#
# MINUTES  the hard limit: at MINUTES the command gets Ctrl-C (SIGINT), so that it keeps every finished row and
#          releases the rest for the next call, and 30 s later it is killed. Leave the lease's own limit a
#          minute above it for the install and the packing.
# DIR      the folder the command writes. With PACK set (default: $OUT where the lease tool sets it), DIR is
#          packed into $PACK/results.tgz, split into 15 MiB parts when larger (results.tgz.part-00, -01, ...:
#          `cat results.tgz* | tar xz` rebuilds it), with the call's log beside it as $PACK/lease.log.
# HIGHWAY_COMMIT  the commit the working tree is, for the rows' commit column (it wins over a .git that travels,
#          which can be an older commit's).
# HIGHWAY_LEASE_INSTALL=0  skip the install (a warm machine that has it already); =links  import the checkout
#          through a folder of links instead of pip (what it falls back to when pip cannot install offline).
set -uo pipefail
if [ $# -lt 3 ]; then
  sed -n '2,18p' "$0" >&2
  exit 2
fi
minutes=$1 dir=$2
shift 2
cd "$(dirname "$0")/.."
pack=${PACK:-${OUT:-}}
log=$(mktemp)
export PYTHONUNBUFFERED=1
{
  # --no-build-isolation and --no-deps: nothing is fetched; the machine's torch, triton, pandas, matplotlib and
  # pytest are used as they are (pip would otherwise download setuptools to build, and fail offline).
  install=${HIGHWAY_LEASE_INSTALL:-1}
  if [ "$install" = 1 ] && ! python3 -m pip install --quiet --no-build-isolation --no-deps --no-index -e .; then
    echo "gpu-lease: pip could not install offline; importing the checkout through links instead"
    install=links
  fi
  if [ "$install" = links ]; then
    # the layout pyproject.toml maps (highway.kernels is kernels/, ...), as links, and highway-bench as a module
    site=$(mktemp -d)
    mkdir "$site/highway" "$site/bin"
    ln -s "$PWD"/highway/*.py "$site/highway/"
    ln -s "$PWD/kernels" "$site/highway/kernels"
    ln -s "$PWD/bench" "$site/highway/bench"
    ln -s "$PWD/reports" "$site/highway/reports"
    printf '#!/bin/sh\nexec python3 -m highway.bench.cli "$@"\n' >"$site/bin/highway-bench"
    chmod +x "$site/bin/highway-bench"
    # PYTHONSAFEPATH: no Python started here puts the working directory first, where highway/ lacks kernels/
    export PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}" PATH="$site/bin:$PATH" PYTHONSAFEPATH=1
  fi
  python3 -c "import highway, torch, triton; print('gpu-lease: highway', highway.__version__, '| torch', \
torch.__version__, '| triton', triton.__version__, '| GPU', torch.cuda.get_device_name() if torch.cuda.is_available() else 'none')"
  timeout -s INT -k 30 "$(python3 -c "print(int(float('$minutes') * 60))")" "$@"
  status=$?
  [ $status = 124 ] && echo "gpu-lease: stopped at the $minutes-minute limit; run the same call again to go on"
  echo "gpu-lease: exit $status"
  exit $status
} 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
if [ -n "$pack" ] && [ -d "$dir" ]; then
  mkdir -p "$pack"
  cp "$log" "$pack/lease.log"
  tar czf "$pack/results.tgz" "$dir"
  if [ "$(stat -c %s "$pack/results.tgz")" -gt $((15 * 1024 * 1024)) ]; then
    split -b 15M -d "$pack/results.tgz" "$pack/results.tgz.part-" && rm "$pack/results.tgz"
  fi
  echo "gpu-lease: packed $dir into $pack: $(ls "$pack" | tr '\n' ' ')"
fi
exit "$status"
