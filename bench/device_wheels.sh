#!/usr/bin/env bash
# Wheels the GPU machine's image lacks (its python3 is 3.12 with torch, transformers, scipy, grpcio, protobuf,
# typer, rich, msgpack...; /work/.library/device/KINDS.md lists them), downloaded here into DIR (default .whl,
# kept out of git by .git/info/exclude) for a device run to carry and install with pip --no-index --no-deps.
#   bash bench/device_wheels.sh            # bench model's training half: monai, pydicom (4 MB)
#   bash bench/device_wheels.sh --federated  # also Flower, Ray, Opacus and their missing deps (about 50 MB)
# Ray's wheel is 73 MB, over the 64 MiB a call may carry; its Java jar (ray/jars, 32 MB) and the dashboard's web
# client, RLlib, Serve, Data, Tune, Train and the LLM library are not used by a Flower simulation and are cut from a repacked copy
# (the wheel's RECORD is rewritten).
# Tried on the H200 (2026-12-02): the slimmed Ray starts (ray.init 5.7 s) and runs GPU tasks; Flower's import chain
# then also asks for cffi, pycparser, pydantic (+ core, annotated-types, typing-inspection) and opentelemetry, and
# the whole set (about 57 MiB) beside the 7 MiB tree reaches the 64 MiB a call may carry: a federated run there
# needs the wheels split over two calls to a warm machine, or fewer of them (prompt-toolkit and wcwidth serve
# only Flower's CLI).
set -euo pipefail
DIR=.whl
FED=0
for a in "$@"; do case $a in --federated) FED=1 ;; *) DIR=$a ;; esac; done
mkdir -p "$DIR"
dl() {
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    --platform manylinux_2_34_x86_64 -d "$DIR" "$@"
}
dl monai==1.6.1 pydicom==3.0.2
if [ "$FED" = 1 ]; then
  dl "flwr==1.41.0" opacus==1.6.0 dp-accounting==0.6.0 dm-tree alembic sqlalchemy cryptography fastapi starlette \
     uvicorn grpcio-health-checking iterators prompt-toolkit wcwidth pycryptodome tomli tomli-w jsonschema \
     jsonschema-specifications referencing rpds-py cffi pycparser pydantic pydantic-core annotated-types typing-inspection "ray==2.55.1"
  python3 - "$DIR" <<'PY'
import base64, csv, hashlib, io, pathlib, sys, zipfile
d = pathlib.Path(sys.argv[1])
src = next(d.glob("ray-*.whl"))
if src.stat().st_size < 60e6:
    sys.exit(0)  # already slimmed
cut = ("ray/jars/", "ray/dashboard/client/", "ray/rllib/", "ray/serve/", "ray/llm/", "ray/data/", "ray/tune/", "ray/train/")
tmp = src.with_suffix(".slim")
with zipfile.ZipFile(src) as zin, zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as zout:
    record_name = next(n for n in zin.namelist() if n.endswith(".dist-info/RECORD"))
    rows = []
    for info in zin.infolist():
        if info.filename.startswith(cut) or info.filename == record_name:
            continue
        data = zin.read(info)
        zout.writestr(info, data)
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        rows.append((info.filename, f"sha256={digest}", str(len(data))))
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows([*rows, (record_name, "", "")])
    zout.writestr(record_name, buf.getvalue())
tmp.replace(src)
print(f"{src.name}: {src.stat().st_size / 1e6:.1f} MB after cutting {', '.join(cut)}")
PY
fi
du -sh "$DIR"
