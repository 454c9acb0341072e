#!/usr/bin/env bash
# The main job, end to end on built-in synthetic data (README quick start):
#   1. a "public" synthetic set pretrains the SqueezeNet body (the paper starts from ImageNet,
#      which cannot be downloaded here), non-privately: no patient is in it;
#   2. five simulated hospitals train with Dopamine (federated DP-SGD) from that body, ε ≤ 8;
#   3. export to ONNX, TFLite and Core ML (int8), signed; 4. publish to a local hub;
#   5. a device syncs the model and grades a synthetic photo, offline.
# Everything lands in ./demo (override with DEMO_DIR). Takes minutes on 2 CPU cores.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
PY=.venv/bin/python
D=${DEMO_DIR:-demo}
PORT=${DEMO_PORT:-8765}
rm -rf "$D" && mkdir -p "$D"

echo "== 1/5 data and public pretraining"
$PY -m trainer synth --out "$D/public" --n 1000 --size 64 --seed 7
$PY -m trainer train --mode central --preset demo --data "$D/public" --out "$D/runs/public"
$PY -m trainer synth --out "$D/hospitals" --n 1500 --size 64 --seed 1

echo "== 2/5 Dopamine: federated DP-SGD across 5 simulated hospitals"
$PY -m trainer train --mode dopamine --preset demo --data "$D/hospitals" \
    --weights "$D/runs/public/model.pt" --weights-public --out "$D/runs/dopamine"

echo "== 3/5 export (ONNX, TFLite, Core ML; int8; signed manifest)"
$PY -m export keygen --out "$D/keys"
$PY -m export all --checkpoint "$D/runs/dopamine/model.pt" --out "$D/dist" --key "$D/keys/private.key"

echo "== 4/5 publish to a local model hub"
$PY -m hub init --root "$D/hub" --publisher-key "$D/keys/public.key" --signing-key "$D/keys/private.key"
$PY -m hub publish "$D/dist" --root "$D/hub"
$PY -m hub serve --root "$D/hub" --host 127.0.0.1 --port "$PORT" > "$D/hub.log" 2>&1 &
HUB_PID=$!
trap 'kill $HUB_PID 2>/dev/null || true' EXIT
$PY - "$PORT" <<'WAIT'
import sys, time, urllib.request
for _ in range(100):  # up to 20 s for the hub to listen
    try:
        urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/healthz", timeout=1); break
    except OSError:
        time.sleep(0.2)
else:
    sys.exit("demo: the hub did not start; see its log")
WAIT

echo "== 5/5 a device syncs, then grades a photo offline"
$PY -m edge_client sync --server "http://127.0.0.1:$PORT" --key "$D/keys/public.key" --home "$D/phone"
kill $HUB_PID; wait $HUB_PID 2>/dev/null || true
$PY -m trainer synth --out "$D/photos" --n 3 --size 256 --seed 99
photo=$(ls "$D"/photos/train_images/*.png | head -n 1)
$PY -m edge_client diagnose "$photo" --home "$D/phone"
echo "demo finished: runs in $D/runs, bundle in $D/dist (report.md), model card $D/runs/dopamine/model_card.md"
