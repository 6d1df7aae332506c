#!/usr/bin/env bash
# Development certificates for xDS over mutual TLS, made with Debian's openssl:
#
#   bash scripts/dev-certs.sh [--out DIR] [--server-name NAME]... [NODE_ID]...
#
# writes into DIR (default .certs/, git-ignored):
#   ca.crt, ca.key            a development CA (kept and reused when it exists,
#                             so running again adds certificates from the same CA)
#   server.crt, server.key    the control plane's xDS certificate; SANs: every
#                             --server-name (default: control-plane, sluice-xds,
#                             sluice-xds.default.svc, localhost) and IP 127.0.0.1
#   nodes/ID.crt, nodes/ID.key  one client certificate per Envoy node id,
#                             SAN DNS:ID and CN=ID (default node: envoy-compose)
#
# For development only: the CA key sits next to the certificates. In production
# issue certificates from your own CA (cert-manager, Vault, SPIFFE/SPIRE...).
set -euo pipefail

out=.certs
server_names=()
nodes=()
days=${SLUICE_CERT_DAYS:-365}
while [ $# -gt 0 ]; do
  case "$1" in
    --out) out=$2; shift 2 ;;
    --server-name) server_names+=("$2"); shift 2 ;;
    -h|--help) sed -n '2,17p' "$0"; exit 0 ;;
    -*) echo "dev-certs: unknown option $1" >&2; exit 2 ;;
    *) nodes+=("$1"); shift ;;
  esac
done
[ ${#server_names[@]} -gt 0 ] || server_names=(control-plane sluice-xds sluice-xds.default.svc localhost)
[ ${#nodes[@]} -gt 0 ] || nodes=(envoy-compose)

# Names go into SANs and file names: keep them to host-name characters.
for name in "${server_names[@]}" "${nodes[@]}"; do
  if ! [[ $name =~ ^[A-Za-z0-9]([A-Za-z0-9._-]{0,62})$ ]]; then
    echo "dev-certs: '$name' is not a usable name (letters, digits, . _ -; at most 63)" >&2
    exit 2
  fi
done

command -v openssl >/dev/null || { echo "dev-certs: openssl not found (apt-get install openssl)" >&2; exit 1; }
umask 077
mkdir -p "$out/nodes"

new_key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }

# Signs a certificate for key $1 into $2 with subject CN $3 and extensions $4.
sign() {
  local key=$1 crt=$2 cn=$3 ext=$4 csr
  csr=$(mktemp)
  openssl req -new -key "$key" -subj "/CN=$cn" -out "$csr"
  openssl x509 -req -in "$csr" -CA "$out/ca.crt" -CAkey "$out/ca.key" \
    -set_serial "0x$(openssl rand -hex 16)" -days "$days" -sha256 \
    -extfile <(printf '%s\n' "$ext") -out "$crt" 2>/dev/null
  rm -f "$csr"
}

if [ ! -s "$out/ca.crt" ] || [ ! -s "$out/ca.key" ]; then
  new_key "$out/ca.key"
  openssl req -x509 -new -key "$out/ca.key" -subj "/CN=Sluice development CA" -days "$days" -sha256 \
    -addext "basicConstraints=critical,CA:TRUE,pathlen:0" \
    -addext "keyUsage=critical,keyCertSign,cRLSign" -out "$out/ca.crt"
  echo "dev-certs: new CA $out/ca.crt"
fi

sans=""
for name in "${server_names[@]}"; do sans+="DNS:$name,"; done
new_key "$out/server.key"
sign "$out/server.key" "$out/server.crt" "${server_names[0]}" "basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=serverAuth
subjectAltName=${sans}IP:127.0.0.1"
echo "dev-certs: server $out/server.crt (${server_names[*]}, 127.0.0.1)"

for node in "${nodes[@]}"; do
  new_key "$out/nodes/$node.key"
  sign "$out/nodes/$node.key" "$out/nodes/$node.crt" "$node" "basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=clientAuth
subjectAltName=DNS:$node"
  echo "dev-certs: node $out/nodes/$node.crt"
done
# Containers run Envoy and Node as other users: let them read what they mount.
chmod 755 "$out" "$out/nodes"
chmod 644 "$out"/*.crt "$out"/nodes/*.crt "$out/server.key" "$out"/nodes/*.key
