#!/usr/bin/env bash
# Throw-away certificates for a local (loopback) Flower federation. NOT for production: a real
# federation's CA is the operator's, and each hospital generates its own auth key pair.
#
#   scripts/make_certs.sh OUT_DIR NUM_HOSPITALS
#
# Writes OUT_DIR/ca.crt (the root every SuperNode and the flwr CLI trust), OUT_DIR/ca.key,
# OUT_DIR/server.{crt,key} (SuperLink TLS, SAN localhost + 127.0.0.1), and for each hospital k
# OUT_DIR/hospital-<k>/auth_key (ECDSA P-384, OpenSSH format; stays at the hospital) and
# auth_key.pub (registered at the SuperLink with `flwr supernode register`).
set -euo pipefail

if [[ $# -ne 2 ]] || ! [[ "$2" =~ ^[0-9]+$ ]] || [[ "$2" -lt 1 ]]; then
    echo "usage: $0 OUT_DIR NUM_HOSPITALS (a positive integer)" >&2
    exit 2
fi
out="$1"; hospitals="$2"
for tool in openssl ssh-keygen; do
    command -v "$tool" >/dev/null || { echo "error: $tool not found (apt-get install openssl openssh-client)" >&2; exit 2; }
done
mkdir -p "$out"
umask 077
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

openssl req -x509 -newkey rsa:3072 -sha256 -days 7 -nodes -subj "/CN=Dopamine throw-away CA" \
    -keyout "$out/ca.key" -out "$out/ca.crt" 2>/dev/null
cat > "$tmp/server.ext" <<EXT
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = DNS:localhost, IP:127.0.0.1, IP:::1
EXT
openssl req -newkey rsa:3072 -sha256 -nodes -subj "/CN=localhost" \
    -keyout "$out/server.key" -out "$tmp/server.csr" 2>/dev/null
openssl x509 -req -in "$tmp/server.csr" -CA "$out/ca.crt" -CAkey "$out/ca.key" -CAcreateserial \
    -days 7 -sha256 -extfile "$tmp/server.ext" -out "$out/server.crt" 2>/dev/null
rm -f "$out/ca.srl"
chmod 644 "$out/ca.crt" "$out/server.crt"

for ((k = 0; k < hospitals; k++)); do
    dir="$out/hospital-$k"
    mkdir -p "$dir"
    rm -f "$dir/auth_key" "$dir/auth_key.pub"
    ssh-keygen -q -t ecdsa -b 384 -N "" -C "hospital-$k" -f "$dir/auth_key"
    chmod 644 "$dir/auth_key.pub"
done
openssl verify -CAfile "$out/ca.crt" "$out/server.crt" >/dev/null
echo "wrote CA, SuperLink certificate (localhost, 127.0.0.1) and $hospitals hospital auth keys to $out"
